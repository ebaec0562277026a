"""Sinkhorn operator: doubly stochastic, equal to a plain-space loop, → the Hungarian permutation as τ → 0."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from imaging.puzzle.sinkhorn import hungarian, log_sinkhorn, permutation_matrix, sample_gumbel, sinkhorn


def _scores(b: int = 4, k: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, k, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _reference_sinkhorn(x: np.ndarray, temperature: float, n_iters: int) -> np.ndarray:
    """The obvious version: exponentiate, then normalise rows and columns in turn (float64, loops)."""
    out = np.empty_like(x)
    for b, matrix in enumerate(x):
        p = np.exp((matrix - matrix.max()) / temperature)
        for _ in range(n_iters):
            p = p / p.sum(axis=1, keepdims=True)
            p = p / p.sum(axis=0, keepdims=True)
        out[b] = p
    return out


def test_rows_and_columns_sum_to_one():
    s = sinkhorn(_scores(), temperature=1.0, n_iters=30)
    assert torch.allclose(s.sum(-1), torch.ones(4, 5, dtype=s.dtype), atol=1e-6)
    assert torch.allclose(s.sum(-2), torch.ones(4, 5, dtype=s.dtype), atol=1e-10)
    assert (s >= 0).all()


def test_gumbel_noise_keeps_it_doubly_stochastic_and_is_reproducible():
    x = _scores()
    first = sinkhorn(x, 1.0, 200, noise_factor=1.0, generator=torch.Generator().manual_seed(3))
    again = sinkhorn(x, 1.0, 200, noise_factor=1.0, generator=torch.Generator().manual_seed(3))
    plain = sinkhorn(x, 1.0, 200)
    assert torch.equal(first, again) and not torch.allclose(first, plain)
    assert torch.allclose(first.sum(-1), torch.ones(4, 5, dtype=x.dtype), atol=1e-3)
    assert torch.allclose(first.sum(-2), torch.ones(4, 5, dtype=x.dtype), atol=1e-10)


def test_gumbel_samples_have_the_gumbel_mean():
    noise = sample_gumbel((200_000,), torch.Generator().manual_seed(0), dtype=torch.float64)
    assert noise.mean().item() == pytest.approx(np.euler_gamma, abs=0.01)  # E[Gumbel(0, 1)] = γ


@pytest.mark.parametrize("temperature", [1.0, 0.3])
def test_log_space_equals_the_plain_space_loop(temperature):
    x = _scores(seed=1)
    expected = _reference_sinkhorn(x.numpy(), temperature, 25)
    assert np.allclose(sinkhorn(x, temperature, 25).numpy(), expected, atol=1e-10)


def test_converges_to_the_hungarian_permutation_as_temperature_goes_to_zero():
    x = _scores(b=8, k=6, seed=2)
    hard = permutation_matrix(hungarian(x), x.dtype)
    errors = [
        (sinkhorn(x, tau, iters) - hard).abs().max().item()
        for tau, iters in ((1.0, 50), (0.1, 300), (0.01, 1000), (0.003, 3000))
    ]
    assert errors == sorted(errors, reverse=True), errors
    assert errors[-1] < 5e-3


def test_small_temperature_and_large_scores_stay_finite():
    x = 1e4 * _scores()
    s = sinkhorn(x.float(), temperature=1e-3, n_iters=20)
    assert torch.isfinite(s).all()
    assert torch.allclose(s.sum(-2), torch.ones(4, 5), atol=1e-4)


def test_gradients_are_finite_and_match_finite_differences():
    x = _scores(b=2, k=3).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a: sinkhorn(a, 0.7, 10), (x,))
    y = (100 * _scores(b=2, k=6)).float().requires_grad_(True)
    target = permutation_matrix(torch.stack([torch.randperm(6) for _ in range(2)]))
    loss = -(target * log_sinkhorn(y / 0.01, 30)).sum()
    loss.backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


def test_hungarian_finds_the_best_permutation_by_brute_force():
    x = _scores(b=6, k=5, seed=4)
    found = hungarian(x)
    for b in range(6):
        best = max(
            itertools.permutations(range(5)), key=lambda p: sum(x[b, i, p[i]].item() for i in range(5))
        )
        assert found[b].tolist() == list(best)
    assert hungarian(x[0]).tolist() == found[0].tolist()  # a single (K, K) matrix


def test_permutation_matrix_is_one_hot_rows():
    matrix = permutation_matrix(torch.tensor([[2, 0, 1]]))
    assert matrix.tolist() == [[[0, 0, 1], [1, 0, 0], [0, 1, 0]]]


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="K, K"):
        log_sinkhorn(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="temperature"):
        sinkhorn(torch.zeros(3, 3), temperature=0.0)
