"""The two O(N·m) passes of a block on a torch device (a GPU): raw .bed bytes are shipped and decoded there.

Shipping bytes instead of decoded float64 moves 32× less over the bus (N/4 bytes per variant instead of
8·N). The products stay in float64, so results equal the CPU path to rounding; everything after the
products (:func:`gwas.kernel.associate_products`) runs on the CPU, where it is O(m·P + missing calls).
"""

from __future__ import annotations

import numpy as np

from genetics.bed_decode import BYTE_TO_DOSAGES_ZERO
from gwas.kernel import GroupDesign


class DeviceProducts:
    """Per-run device copies of each group's right-hand side; safe to share between worker threads."""

    def __init__(self, device: str, designs: list[GroupDesign]):
        import torch

        self._torch = torch
        self.device = torch.device(device)
        self._table = torch.from_numpy(BYTE_TO_DOSAGES_ZERO).to(self.device)  # (256, 4): byte → dosages
        self._rhs = [torch.from_numpy(d.rhs).to(self.device) for d in designs]
        self._member = [torch.from_numpy(d.member.astype(np.float64)).to(self.device) for d in designs]

    def products(self, raw: np.ndarray, n_samples: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per group, (g0ᵀ·rhs (m, P + k + 1), Σ_group g0² (m,)) of a raw (m, B) block."""
        torch = self._torch
        m = raw.shape[0]
        codes = torch.from_numpy(np.require(raw, requirements=["C", "W"])).to(self.device).reshape(-1).int()
        g0 = torch.index_select(self._table, 0, codes).reshape(m, -1)[:, :n_samples]  # (m, N)
        results = []
        for rhs, member in zip(self._rhs, self._member, strict=True):
            product = g0 @ rhs
            sumsq = (g0 * g0) @ member
            results.append((product.cpu().numpy(), sumsq.cpu().numpy()))
        return results
