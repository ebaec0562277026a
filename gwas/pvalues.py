"""Two-sided p-values of Student t statistics, with -log10 P that never underflows.

P = I_x(dof/2, 1/2) with x = dof / (dof + t²) (regularized incomplete beta). Where P underflows double
precision (below ~1e-300), LOG10_P is computed in extended precision with mpmath, so a very strong
association reports LOG10_P = 350.2, not inf.
"""

from __future__ import annotations

import mpmath
import numpy as np
from scipy import special

_UNDERFLOW = 1e-290


def t_test_pvalues(t: np.ndarray, dof: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided P and -log10 P for t statistics.

    Args:
        t: any-shape float64 t statistics (NaN passes through).
        dof: residual degrees of freedom, broadcastable to ``t``.

    Returns:
        (p, log10_p), both shaped like ``t``.

    >>> p, lp = t_test_pvalues(np.array([0.0, 2.0, 80.0]), 10_000)
    >>> [round(float(v), 6) for v in p[:2]], bool(lp[2] > 300)
    ([1.0, 0.045528], True)
    """
    t = np.asarray(t, dtype=np.float64)
    dof = np.broadcast_to(np.asarray(dof, dtype=np.float64), t.shape)
    t2 = t * t
    x = dof / (dof + t2)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = special.betainc(dof / 2.0, 0.5, x)
        log10_p = -np.log10(p)
    tiny = np.flatnonzero((p < _UNDERFLOW) & np.isfinite(t) & (dof > 0))
    if tiny.size:
        flat_lp = log10_p.reshape(-1)
        flat_t2, flat_dof = t2.reshape(-1), dof.reshape(-1)
        with mpmath.workdps(30):
            for i in tiny:
                d = mpmath.mpf(float(flat_dof[i]))
                xi = d / (d + mpmath.mpf(float(flat_t2[i])))
                value = mpmath.betainc(d / 2, mpmath.mpf(0.5), 0, xi, regularized=True)
                flat_lp[i] = float(-mpmath.log10(value))
    return p, log10_p
