"""Genetic encoders: one registry, one factory (like timm's ``register_model`` / ``create_model``).

Every encoder is an ``nn.Module`` with ``num_features`` and ``forward_features(x)`` mapping (B, F) → (B, D).
With ``num_classes > 0`` a linear head is added and ``forward`` returns (B, num_classes); otherwise
``forward`` equals ``forward_features``.

Inputs are (B, F) float tensors. Encoders built with ``sparse_input=True`` (the ``embedding_bag*`` family)
also accept a 2-D torch sparse tensor (B, F), CSR or COO: the first layer is an ``nn.EmbeddingBag`` with
``mode="sum"``, the CSR column indices as bag entries, the row pointers as offsets and the stored values as
per-sample weights, which equals ``x @ W + b`` for the dense matrix ``x`` without ever building it.

>>> import torch
>>> enc = create_encoder("mlp_h1", in_features=10, hidden_sizes=(16,))
>>> enc.num_features, tuple(enc(torch.zeros(4, 10)).shape)
(16, (4, 16))
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence

import torch
from torch import nn

from genetics.errors import GeneticsError

NORMS = ("layer", "batch", "none")
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}

_ENCODERS: dict[str, Callable[..., nn.Module]] = {}


class UnknownEncoderError(GeneticsError, KeyError):
    """``create_encoder`` was given a name no encoder is registered under."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_encoder(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register an encoder constructor ``fn(in_features, **kw)`` under ``fn.__name__``."""
    name = fn.__name__
    if name in _ENCODERS:
        raise ValueError(f"genetic encoder {name!r} is already registered")
    _ENCODERS[name] = fn
    return fn


def list_encoders(pattern: str = "*") -> list[str]:
    """Sorted names of registered encoders matching a shell-style ``pattern``."""
    return sorted(name for name in _ENCODERS if fnmatch.fnmatch(name, pattern))


def create_encoder(name: str, in_features: int, **kwargs) -> nn.Module:
    """Build encoder ``name`` for (B, in_features) inputs; ``kwargs`` override its defaults."""
    if name not in _ENCODERS:
        raise UnknownEncoderError(
            f"unknown genetic encoder {name!r}; available: {', '.join(list_encoders())}"
        )
    if int(in_features) < 1:
        raise ValueError(f"in_features must be positive, got {in_features}")
    return _ENCODERS[name](int(in_features), **kwargs)


class SparseLinear(nn.Module):
    """``x @ weight + bias`` for (B, F) dense or sparse (CSR/COO) ``x``, via ``nn.EmbeddingBag(mode="sum")``.

    ``weight`` is the bag table (F, D): row f is the embedding of feature f.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.bag = nn.EmbeddingBag(in_features, out_features, mode="sum", include_last_offset=True)
        nn.init.uniform_(self.bag.weight, -(in_features**-0.5), in_features**-0.5)  # as nn.Linear
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    @property
    def weight(self) -> torch.Tensor:
        """(F, D) embedding table."""
        return self.bag.weight

    def _bag(self, cols: torch.Tensor, offsets: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """Bags ``cols[offsets[b]:offsets[b+1]]`` weighted by ``values``; offsets (B + 1,)."""
        return self.bag(cols.long(), offsets.long(), per_sample_weights=values.to(self.weight.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) → (B, D)."""
        if x.dim() != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"expected a (B, {self.in_features}) input, got {tuple(x.shape)}")
        if x.layout == torch.strided:
            out = x.to(self.weight.dtype) @ self.weight
        elif x.layout == torch.sparse_csr:
            out = self._bag(x.col_indices(), x.crow_indices(), x.values())
        elif x.layout == torch.sparse_coo:
            x = x.coalesce()  # row-major order: entries of one row are contiguous
            rows, cols = x.indices()
            counts = torch.bincount(rows, minlength=x.shape[0])
            offsets = torch.cat([counts.new_zeros(1), torch.cumsum(counts, 0)])
            out = self._bag(cols, offsets, x.values())
        else:
            raise ValueError(f"sparse input must be COO or CSR, got {x.layout}")
        return out if self.bias is None else out + self.bias


def _norm(kind: str, width: int) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(width)
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; choose one of {NORMS}")


class MLPEncoder(nn.Module):
    """Fully connected encoder (B, F) → (B, D).

    Each hidden layer is Linear → activation → norm → dropout (ContIG's ``DietNetworkBasic`` order).
    ``input_dropout`` drops input features first (for standardised inputs and a linear first layer, a
    ridge penalty in expectation): with thousands of SNPs and a thousand people a tower can otherwise map
    every person's genotype anywhere, i.e. memorise people instead of learning effects.
    ``out_features`` adds a final plain Linear. D = ``out_features`` or the last hidden size, or F when
    there are no layers at all (identity). ``norm="layer"`` (default) keeps each row independent of the
    others in the batch, which matters when rows of people without this modality are zero padding;
    ``norm="batch"`` reproduces ContIG but mixes rows. ``sparse_input=True`` makes the first layer a
    :class:`SparseLinear` so (B, F) sparse tensors are accepted.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (2048,),
        out_features: int | None = None,
        activation: str = "relu",
        norm: str = "layer",
        dropout: float = 0.0,
        sparse_input: bool = False,
        num_classes: int = 0,
        input_dropout: float = 0.0,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}; choose one of {sorted(ACTIVATIONS)}")
        _norm(norm, 1)  # validate early
        self.in_features = in_features
        self.sparse_input = sparse_input
        if input_dropout and sparse_input:
            raise ValueError(
                "input_dropout needs dense inputs (sparse_input=False); set input_dropout=0 for this tower"
            )
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers += [
                self._linear(width, int(size), first=not layers),
                ACTIVATIONS[activation](),
                _norm(norm, int(size)),
                nn.Dropout(dropout),
            ]
            width = int(size)
        if out_features is not None:
            layers.append(self._linear(width, int(out_features), first=not layers))
            width = int(out_features)
        if sparse_input and not layers:
            raise ValueError("sparse_input=True needs at least one layer (hidden_sizes or out_features)")
        if input_dropout:
            layers.insert(0, nn.Dropout(input_dropout))
        self.blocks = nn.Sequential(*layers)
        self.num_features = width
        self.num_classes = 0
        self.head: nn.Module = nn.Identity()
        self.reset_classifier(num_classes)

    def _linear(self, n_in: int, n_out: int, first: bool) -> nn.Module:
        return SparseLinear(n_in, n_out) if (first and self.sparse_input) else nn.Linear(n_in, n_out)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head: (B, num_features) → (B, num_classes); 0 removes it."""
        self.num_classes = int(num_classes)
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, F) → (B, num_features)."""
        if x.layout != torch.strided and not self.sparse_input:
            x = x.to_dense()
        return self.blocks(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(B, num_features) → (B, num_classes), or unchanged without a head."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _defaults(kwargs: dict, **defaults) -> dict:
    return {**defaults, **kwargs}


@register_encoder
def identity(in_features: int, **kwargs) -> MLPEncoder:
    """No layers: features are the input (ContIG's genetics model ``None``); num_features = F."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=()))


@register_encoder
def linear(in_features: int, **kwargs) -> MLPEncoder:
    """One Linear F → ``out_features`` (default 128)."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=(), out_features=128))


@register_encoder
def mlp(in_features: int, **kwargs) -> MLPEncoder:
    """Configurable MLP; default one hidden layer of 512 with LayerNorm."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=(512,)))


@register_encoder
def mlp_h1(in_features: int, **kwargs) -> MLPEncoder:
    """ContIG ``H1_2048``: one hidden layer of 2048 (LayerNorm unless ``norm="batch"``)."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=(2048,)))


@register_encoder
def mlp_h12(in_features: int, **kwargs) -> MLPEncoder:
    """ContIG ``H12_2048``: two hidden layers of 2048."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=(2048, 2048)))


@register_encoder
def mlp_h1_bn(in_features: int, **kwargs) -> MLPEncoder:
    """ContIG ``H1_2048`` exactly as published (BatchNorm; rows of a batch interact)."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=(2048,), norm="batch"))


@register_encoder
def mlp_h12_bn(in_features: int, **kwargs) -> MLPEncoder:
    """ContIG ``H12_2048`` exactly as published (BatchNorm; rows of a batch interact)."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=(2048, 2048), norm="batch"))


@register_encoder
def embedding_bag(in_features: int, **kwargs) -> MLPEncoder:
    """Sparse linear F → ``out_features`` (default 128) through ``nn.EmbeddingBag``; accepts sparse (B, F)."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=(), out_features=128, sparse_input=True))


@register_encoder
def embedding_bag_mlp(in_features: int, **kwargs) -> MLPEncoder:
    """EmbeddingBag as the first hidden layer (default 256) then activation/norm; accepts sparse (B, F)."""
    return MLPEncoder(in_features, **_defaults(kwargs, hidden_sizes=(256,), sparse_input=True))
