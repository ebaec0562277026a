"""The Sinkhorn operator in log space, Gumbel-Sinkhorn, and hard decoding with the Hungarian algorithm.

Sinkhorn(X / τ) alternately normalises the rows and columns of exp(X / τ); the limit is a doubly
stochastic matrix, and as τ → 0 it tends to the permutation matrix that maximises ⟨P, X⟩ (Mena et al.,
"Learning latent permutations with Gumbel-Sinkhorn networks", ICLR 2018, Theorem 1). The iterations run
on log-probabilities with ``logsumexp``, so small temperatures do not overflow, and every step is
differentiable.

Convention: ``log_alpha[b, i, j]`` scores "shuffled item i belongs at position j"; a permutation matrix
``P[b, i, j] = 1`` means the same.

>>> import torch
>>> scores = torch.tensor([[[0.0, 5.0], [4.0, 0.0]]])
>>> sinkhorn(scores, temperature=0.1, n_iters=30).round(decimals=3)
tensor([[[0., 1.],
         [1., 0.]]])
>>> hungarian(scores).tolist()
[[1, 0]]
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def log_sinkhorn(log_alpha: torch.Tensor, n_iters: int = 20) -> torch.Tensor:
    """Sinkhorn normalisation in log space: (B, K, K) scores → (B, K, K) log of a doubly stochastic matrix.

    Each iteration subtracts the row log-sum-exp, then the column log-sum-exp. After the last iteration the
    columns sum to 1 exactly (to rounding) and the rows approximately; the row error shrinks
    geometrically with ``n_iters`` (more slowly for a small temperature).
    """
    if log_alpha.ndim < 2 or log_alpha.shape[-1] != log_alpha.shape[-2]:
        raise ValueError(f"log_alpha must be (..., K, K), got {tuple(log_alpha.shape)}")
    for _ in range(n_iters):
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-1, keepdim=True)
        log_alpha = log_alpha - torch.logsumexp(log_alpha, dim=-2, keepdim=True)
    return log_alpha


def sample_gumbel(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
    eps: float = 1e-20,
) -> torch.Tensor:
    """Standard Gumbel noise −log(−log U), U ~ Uniform(0, 1)."""
    if generator is not None:  # a CPU generator: draw on the CPU, then move
        u = torch.rand(shape, generator=generator, dtype=dtype).to(device)
    else:
        u = torch.rand(shape, dtype=dtype, device=device)
    return -torch.log(-torch.log(u + eps) + eps)


def sinkhorn(
    log_alpha: torch.Tensor,
    temperature: float = 1.0,
    n_iters: int = 20,
    noise_factor: float = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Gumbel-Sinkhorn: (B, K, K) scores → (B, K, K) doubly stochastic "soft permutation" matrix.

    Args:
        log_alpha: (B, K, K) or (K, K) scores, any real values.
        temperature: τ > 0; smaller values give a harder (closer to a permutation) matrix.
        n_iters: Sinkhorn iterations.
        noise_factor: scale of the Gumbel noise added to the scores before dividing by τ (0 = none); with
            noise the result is a sample from the Gumbel-Sinkhorn distribution (Mena et al. 2018).
        generator: random source of the noise.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if noise_factor > 0:
        noise = sample_gumbel(log_alpha.shape, generator, log_alpha.device, log_alpha.dtype)
        log_alpha = log_alpha + noise_factor * noise
    return torch.exp(log_sinkhorn(log_alpha / temperature, n_iters))


def hungarian(scores: torch.Tensor) -> torch.Tensor:
    """Hard decoding: (B, K, K) scores → (B, K) long, the position assigned to each item (max ⟨P, scores⟩).

    Runs scipy's ``linear_sum_assignment`` per matrix on the CPU (no gradient).
    """
    single = scores.ndim == 2
    batch = scores.detach().reshape(-1, *scores.shape[-2:]).to("cpu", torch.float64).numpy()
    out = np.empty(batch.shape[:2], dtype=np.int64)
    for b, matrix in enumerate(batch):
        rows, cols = linear_sum_assignment(matrix, maximize=True)
        out[b, rows] = cols
    result = torch.from_numpy(out).to(scores.device)
    return result[0] if single else result


def permutation_matrix(assignment: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, K) long assignment (item i → position ``assignment[b, i]``) → (B, K, K) 0/1 matrix."""
    k = assignment.shape[-1]
    return torch.nn.functional.one_hot(assignment, k).to(dtype)


__all__ = ["hungarian", "log_sinkhorn", "permutation_matrix", "sample_gumbel", "sinkhorn"]
