"""3D/2D U-Net: shapes, registry, the encoder interface, skips, norms and dropout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imaging.errors import ImagingError
from imaging.registry import create_encoder, list_encoders
from imaging.unet import UNet, UNetDecoder, UNetEncoder, _InstanceNorm


def test_registered():
    assert {"unet3d", "unet2d"} <= set(list_encoders())
    assert isinstance(create_encoder("unet3d"), UNetEncoder)
    assert create_encoder("unet2d").dim == 2


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("norm", ["instance", "batch", "group", "none"])
def test_shapes(dim, norm):
    encoder = create_encoder(f"unet{dim}d", in_chans=2, base_width=4, depth=3, norm=norm, dropout=0.1)
    spatial = (8, 12, 4)[:dim] if dim == 3 else (8, 12)
    x = torch.randn(2, 2, *spatial)
    assert encoder.feature_channels == [4, 8, 16]
    assert encoder.num_features == 16
    levels = encoder.forward_levels(x)
    for level, (tensor, channels) in enumerate(zip(levels, encoder.feature_channels, strict=True)):
        assert tensor.shape == (2, channels, *(s // 2**level for s in spatial))
    assert encoder.forward_features(x).shape == (2, 16)
    model = UNet(encoder, num_classes=3, dropout=0.1)
    assert model(x).shape == (2, 3, *spatial)


def test_features_are_mean_of_deepest_level():
    encoder = create_encoder("unet3d", base_width=2, depth=2).eval()
    x = torch.randn(1, 1, 4, 4, 4)
    deepest = encoder.forward_levels(x)[-1]
    torch.testing.assert_close(encoder.forward_features(x), deepest.mean(dim=(2, 3, 4)))


def test_deepest_level_of_one_voxel():
    encoder = create_encoder("unet3d", base_width=2, depth=4)  # 8 → 1 voxel at the bottom
    out = UNet(encoder, 2)(torch.randn(2, 1, 8, 8, 8))
    assert out.shape == (2, 2, 8, 8, 8)


def test_instance_norm_matches_torch():
    ours, reference = _InstanceNorm(3), nn.InstanceNorm3d(3, affine=True)
    with torch.no_grad():
        ours.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        ours.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    reference.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 4, 5, 3)
    torch.testing.assert_close(ours(x), reference(x))
    single = ours(torch.randn(2, 3, 1, 1, 1))
    torch.testing.assert_close(single, ours.bias.view(1, 3, 1, 1, 1).expand(2, 3, 1, 1, 1))


def test_skips_are_used():
    """The output at one voxel depends on the shallow level (a skip), not only on the bottleneck."""
    torch.manual_seed(0)
    encoder = create_encoder("unet2d", base_width=4, depth=2, norm="none")
    model = UNet(encoder, 1).eval()
    x = torch.randn(1, 1, 8, 8, requires_grad=True)
    model(x)[0, 0, 0, 0].backward()
    # Without a skip the gradient would be spread evenly over a 2×2-pooled receptive field.
    assert x.grad.abs().sum() > 0
    levels = encoder.forward_levels(x.detach())
    changed = [t.clone() for t in levels]
    changed[0] = changed[0] + 1.0
    assert not torch.allclose(model.decoder(levels), model.decoder(changed))


def test_dropout_layers_for_mc_dropout():
    model = UNet(create_encoder("unet3d", base_width=2, depth=2, dropout=0.3), 2, dropout=0.3)
    kinds = {type(m) for m in model.modules()}
    assert nn.Dropout3d in kinds
    assert nn.Dropout2d in {type(m) for m in UNet(create_encoder("unet2d", dropout=0.2), 2).modules()}
    assert not any(isinstance(m, nn.Dropout3d) for m in create_encoder("unet3d").modules())


def test_decoder_alone():
    decoder = UNetDecoder([2, 4, 8], num_classes=5, dim=2)
    levels = [torch.randn(1, 2, 8, 8), torch.randn(1, 4, 4, 4), torch.randn(1, 8, 2, 2)]
    assert decoder(levels).shape == (1, 5, 8, 8)


@pytest.mark.parametrize(
    ("kwargs", "shape", "match"),
    [
        ({"depth": 3}, (1, 1, 6, 8, 8), "divisible"),
        ({}, (1, 2, 8, 8, 8), "C=1"),
        ({}, (1, 1, 8, 8), r"\(B, C, D, H, W\)"),
    ],
)
def test_bad_input(kwargs, shape, match):
    encoder = create_encoder("unet3d", base_width=2, **kwargs)
    with pytest.raises(ImagingError, match=match):
        encoder(torch.zeros(shape))


def test_bad_arguments():
    with pytest.raises(ImagingError, match="norm"):
        create_encoder("unet3d", norm="layer")
    with pytest.raises(ImagingError, match="U-Net needs an encoder"):
        UNet(create_encoder("resnet18", in_chans=1), 2)
