"""Genetic encoders: registry/factory, shapes, norms on padded batches, EmbeddingBag vs dense linear."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from genetics.encoders import (
    MLPEncoder,
    SparseLinear,
    UnknownEncoderError,
    create_encoder,
    list_encoders,
    register_encoder,
)
from genetics.errors import GeneticsError

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def test_registry_lists_the_families():
    names = list_encoders()
    for name in ("identity", "linear", "mlp", "mlp_h1", "mlp_h12", "embedding_bag", "embedding_bag_mlp"):
        assert name in names
    assert names == sorted(names)
    assert list_encoders("mlp_h1*") == ["mlp_h1", "mlp_h12", "mlp_h12_bn", "mlp_h1_bn"]


def test_unknown_name_lists_available_names():
    with pytest.raises(UnknownEncoderError, match="available: .*mlp_h12") as info:
        create_encoder("resnet18", in_features=4)
    assert isinstance(info.value, GeneticsError) and isinstance(info.value, KeyError)
    assert "'resnet18'" in str(info.value)


def test_factory_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown norm"):
        create_encoder("mlp", 8, norm="group")
    with pytest.raises(ValueError, match="unknown activation"):
        create_encoder("mlp", 8, activation="swish9")
    with pytest.raises(ValueError, match="in_features"):
        create_encoder("mlp", 0)
    with pytest.raises(TypeError):
        create_encoder("mlp", 8, hidden=4)

    def mlp(in_features: int) -> nn.Module:  # same name as a registered encoder
        return nn.Identity()

    with pytest.raises(ValueError, match="already registered"):
        register_encoder(mlp)
    assert create_encoder("mlp", 8).num_features == 512  # the original is kept


@pytest.mark.parametrize(
    ("name", "kwargs", "width"),
    [
        ("identity", {}, 30),
        ("linear", {}, 128),
        ("linear", {"out_features": 7}, 7),
        ("mlp", {}, 512),
        ("mlp", {"hidden_sizes": (16, 8), "dropout": 0.1, "activation": "gelu"}, 8),
        ("mlp", {"hidden_sizes": (16,), "out_features": 5}, 5),
        ("mlp_h1", {}, 2048),
        ("mlp_h12", {"hidden_sizes": (32, 12)}, 12),
        ("mlp_h1_bn", {"hidden_sizes": (10,)}, 10),
        ("embedding_bag", {"out_features": 9}, 9),
        ("embedding_bag_mlp", {"hidden_sizes": (6,)}, 6),
    ],
)
def test_shapes_and_num_features(name, kwargs, width):
    encoder = create_encoder(name, in_features=30, **kwargs)
    x = torch.randn(4, 30)
    features = encoder.forward_features(x)
    assert features.shape == (4, width) == (4, encoder.num_features)
    assert torch.equal(encoder.eval()(x), encoder.forward_features(x))  # no head: forward = features


def test_contig_shapes():
    h1 = create_encoder("mlp_h1", 100)
    h12 = create_encoder("mlp_h12", 100)
    linears = [m for m in h12.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(2048, 100), (2048, 2048)]
    assert h1.num_features == h12.num_features == 2048
    assert any(isinstance(m, nn.LayerNorm) for m in h1.modules())
    assert any(
        isinstance(m, nn.BatchNorm1d) for m in create_encoder("mlp_h12_bn", 10, hidden_sizes=(4, 4)).modules()
    )


def test_head_and_reset_classifier():
    encoder = create_encoder("mlp", 12, hidden_sizes=(8,), num_classes=3).eval()
    x = torch.randn(5, 12)
    assert encoder(x).shape == (5, 3) and encoder.forward_features(x).shape == (5, 8)
    encoder.reset_classifier(0)
    assert torch.equal(encoder(x), encoder.forward_features(x))


def _padded_batches(in_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches sharing row 0; the rest is real data in one and zero padding in the other."""
    torch.manual_seed(0)
    real = torch.randn(6, in_features)
    padded = real.clone()
    padded[1:] = 0.0
    return real, padded


def test_layernorm_rows_are_independent_of_the_batch():
    encoder = create_encoder("mlp_h12", 16, hidden_sizes=(32, 8)).train()
    real, padded = _padded_batches(16)
    torch.testing.assert_close(encoder(real)[0], encoder(padded)[0])
    torch.testing.assert_close(encoder(real)[0], encoder(real[:1])[0])


def test_batchnorm_rows_depend_on_padding():
    encoder = create_encoder("mlp_h12_bn", 16, hidden_sizes=(32, 8)).train()
    real, padded = _padded_batches(16)
    assert not torch.allclose(encoder(real)[0], encoder(padded)[0], atol=1e-3)


def _sparse_burden(batch: int, genes: int) -> torch.Tensor:
    torch.manual_seed(1)
    dense = torch.rand(batch, genes) * (torch.rand(batch, genes) < 0.05)
    dense[2] = 0.0  # a person with no burden at all
    return dense


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("layout", ["csr", "coo", "dense"])
def test_embedding_bag_equals_dense_linear(layout, device):
    dense = _sparse_burden(8, 500).to(device)
    encoder = create_encoder("embedding_bag", 500, out_features=16).to(device)
    reference = nn.Linear(500, 16).to(device)
    with torch.no_grad():
        reference.weight.copy_(encoder.blocks[0].weight.T)
        reference.bias.copy_(encoder.blocks[0].bias)
    x = {"csr": dense.to_sparse_csr(), "coo": dense.to_sparse(), "dense": dense}[layout]
    out = encoder(x)
    expected = reference(dense)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[2], reference.bias)  # empty bag → bias only
    out.square().sum().backward()
    expected.square().sum().backward()
    torch.testing.assert_close(encoder.blocks[0].weight.grad, reference.weight.grad.T, rtol=1e-4, atol=1e-5)


def test_embedding_bag_uses_embeddingbag_sum():
    encoder = create_encoder("embedding_bag_mlp", 50, hidden_sizes=(8, 4))
    bag = encoder.blocks[0]
    assert isinstance(bag, SparseLinear) and isinstance(bag.bag, nn.EmbeddingBag) and bag.bag.mode == "sum"
    x = _sparse_burden(5, 50)
    torch.testing.assert_close(encoder(x.to_sparse_csr()), encoder(x))
    assert encoder(x.to_sparse()).shape == (5, 4)


def test_sparse_linear_checks_shapes():
    layer = SparseLinear(10, 3)
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        layer(torch.zeros(2, 11).to_sparse_csr())


def test_dense_encoder_accepts_sparse_input():
    encoder = create_encoder("mlp", 20, hidden_sizes=(4,)).eval()
    x = _sparse_burden(3, 20)
    torch.testing.assert_close(encoder(x.to_sparse()), encoder(x))


def test_mlp_encoder_is_an_nn_module_with_interface():
    encoder = MLPEncoder(6, hidden_sizes=(3,))
    assert isinstance(encoder, nn.Module) and encoder.num_features == 3
    assert callable(encoder.forward_features)
    with pytest.raises(ValueError, match="at least one layer"):
        MLPEncoder(6, hidden_sizes=(), sparse_input=True)


def test_input_dropout_drops_inputs_in_training_only():
    import torch

    from genetics.encoders import MLPEncoder

    torch.manual_seed(0)
    plain = MLPEncoder(50, hidden_sizes=(), out_features=4)
    dropped = MLPEncoder(50, hidden_sizes=(), out_features=4, input_dropout=0.9)
    dropped.blocks[1].load_state_dict(plain.blocks[0].state_dict())
    x = torch.randn(8, 50)
    dropped.eval()
    torch.testing.assert_close(dropped(x), plain(x))
    dropped.train()
    assert not torch.allclose(dropped(x), plain(x))
    with pytest.raises(ValueError, match="dense"):
        MLPEncoder(50, hidden_sizes=(8,), input_dropout=0.5, sparse_input=True)
