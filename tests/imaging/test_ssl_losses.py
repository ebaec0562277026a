"""imaging.ssl.losses and the permutation sets against loop versions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F

from imaging.ssl.losses import binary_single_negative, info_nce, nt_xent, triplet
from imaging.ssl.permutations import hamming_permutations, min_hamming_distance, random_permutations


def nt_xent_loop(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    z = F.normalize(torch.cat([z1, z2]), dim=1).tolist()
    n, total = len(z), 0.0
    for i in range(n):
        j = (i + n // 2) % n
        sims = {k: sum(a * b for a, b in zip(z[i], z[k], strict=True)) / t for k in range(n) if k != i}
        total += -sims[j] + math.log(sum(math.exp(s) for s in sims.values()))
    return total / n


def test_nt_xent_matches_the_loop_version():
    g = torch.Generator().manual_seed(0)
    z1, z2 = (
        torch.randn(5, 7, generator=g, dtype=torch.float64),
        torch.randn(5, 7, generator=g, dtype=torch.float64),
    )
    assert math.isclose(float(nt_xent(z1, z2, 0.2)), nt_xent_loop(z1, z2, 0.2), rel_tol=1e-10)


def test_info_nce_matches_the_loop_version():
    g = torch.Generator().manual_seed(1)
    pred, cand = (
        torch.randn(4, 3, generator=g, dtype=torch.float64),
        torch.randn(6, 3, generator=g, dtype=torch.float64),
    )
    targets = torch.tensor([0, 5, 2, 2])
    loss, acc = info_nce(pred, cand, targets, temperature=0.5)
    expected, hits = 0.0, 0
    for p, t in zip(pred.tolist(), targets.tolist(), strict=True):
        logits = [sum(a * b for a, b in zip(p, c, strict=True)) / 0.5 for c in cand.tolist()]
        expected += -logits[t] + math.log(sum(math.exp(v) for v in logits))
        hits += int(np.argmax(logits) == t)
    assert math.isclose(float(loss), expected / 4, rel_tol=1e-10) and float(acc) == hits / 4


def test_triplet_and_binary_losses_match_their_formulas():
    g = torch.Generator().manual_seed(2)
    a, p, n = (torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(3))
    expected = 0.0
    for x, y, z in zip(F.normalize(a, dim=1), F.normalize(p, dim=1), F.normalize(n, dim=1), strict=True):
        expected += max(0.0, float((x - y).norm() - (x - z).norm()) + 0.3)
    assert math.isclose(float(triplet(a, p, n, margin=0.3)), expected / 3, rel_tol=1e-10)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    pos, neg = (a * p).sum(1).tolist(), (a * n).sum(1).tolist()
    manual = sum(-math.log(sig(u)) - math.log(1 - sig(v)) for u, v in zip(pos, neg, strict=True)) / 6
    assert math.isclose(float(binary_single_negative(a, p, n)), manual, rel_tol=1e-10)


def greedy_loop(n: int, size: int, first: int) -> list[tuple[int, ...]]:
    """Noroozi & Favaro's greedy choice over all permutations, written as plain loops."""
    everything = list(itertools.permutations(range(n)))
    chosen = [everything[first]]
    while len(chosen) < size:

        def nearest(c):
            return min(sum(x != y for x, y in zip(c, s, strict=True)) for s in chosen)

        chosen.append(max(everything, key=nearest))  # max() keeps the first of equal ones
    return chosen


def test_hamming_set_matches_the_greedy_loop_and_beats_random_sets():
    perms = hamming_permutations(5, 12, seed=3)
    first = list(itertools.permutations(range(5))).index(tuple(perms[0]))
    assert [tuple(p) for p in perms] == greedy_loop(5, 12, first)
    for n, size in ((9, 100), (27, 100)):
        greedy = hamming_permutations(n, size, seed=0)
        assert len({tuple(p) for p in greedy}) == size
        assert sorted(greedy[0]) == list(range(n))
        assert min_hamming_distance(greedy) > min_hamming_distance(random_permutations(n, size, seed=0))


def test_grouped_nt_xent_matches_a_loop_over_same_group_candidates():
    g = torch.Generator().manual_seed(5)
    z1, z2 = (torch.randn(6, 4, generator=g, dtype=torch.float64) for _ in range(2))
    groups = torch.tensor([0, 0, 0, 1, 1, 1])
    z = F.normalize(torch.cat([z1, z2]), dim=1).tolist()
    both = groups.tolist() * 2
    total = 0.0
    for i in range(12):
        j = (i + 6) % 12
        sims = {
            k: sum(a * b for a, b in zip(z[i], z[k], strict=True)) / 0.05
            for k in range(12)
            if k != i and both[k] == both[i]
        }
        total += -sims[j] + math.log(sum(math.exp(s) for s in sims.values()))
    assert math.isclose(float(nt_xent(z1, z2, 0.05, groups)), total / 12, rel_tol=1e-10)
    one_group = nt_xent(z1, z2, 0.05, torch.zeros(6, dtype=torch.long))
    assert math.isclose(float(one_group), float(nt_xent(z1, z2, 0.05)), rel_tol=1e-12)
