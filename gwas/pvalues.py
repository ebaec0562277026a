"""Two-sided p-values of Student t statistics, with -log10 P that never underflows.

P = I_x(dof/2, 1/2) with x = dof / (dof + t²) (regularized incomplete beta). Where P underflows double
precision (below ~1e-290), LOG10_P comes from the continued fraction of I_x with its prefactor
x^a (1−x)^b / (a B(a, b)) kept in log space (Numerical Recipes' ``betacf``, modified Lentz), so a very
strong association reports LOG10_P = 350.2, not inf. mpmath remains the fallback where that fraction
converges slowly.
"""

from __future__ import annotations

import numpy as np
from scipy import special

_UNDERFLOW = 1e-290
_TINY = 1e-300


def _log_betainc_cf(a: np.ndarray, b: np.ndarray, x: np.ndarray, iterations: int = 2000) -> np.ndarray:
    """Natural log of I_x(a, b) by the continued fraction, valid for x < (a + 1) / (a + b + 2).

    Args: (e,) float64 arrays. Returns: (e,) log I_x(a, b); NaN where the fraction did not converge.
    """
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = np.ones_like(x)
    d = 1.0 - qab * x / qap
    d = np.where(np.abs(d) < _TINY, _TINY, d)
    d = 1.0 / d
    h = d.copy()
    done = np.zeros(x.shape, dtype=bool)
    for m in range(1, iterations + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < _TINY, _TINY, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < _TINY, _TINY, c)
        d = 1.0 / d
        h = np.where(done, h, h * d * c)
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = np.where(np.abs(d) < _TINY, _TINY, d)
        c = 1.0 + aa / c
        c = np.where(np.abs(c) < _TINY, _TINY, c)
        d = 1.0 / d
        delta = d * c
        h = np.where(done, h, h * delta)
        done |= np.abs(delta - 1.0) < 1e-15
        if done.all():
            break
    log_front = a * np.log(x) + b * np.log1p(-x) - np.log(a) - special.betaln(a, b)
    return np.where(done, log_front + np.log(h), np.nan)


def _log10_p_mpmath(t2: float, dof: float) -> float:
    import mpmath

    with mpmath.workdps(30):
        d = mpmath.mpf(dof)
        x = d / (d + mpmath.mpf(t2))
        return float(-mpmath.log10(mpmath.betainc(d / 2, mpmath.mpf(0.5), 0, x, regularized=True)))


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
        a, xs = dof.reshape(-1)[tiny] / 2.0, x.reshape(-1)[tiny]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            values = -_log_betainc_cf(a, np.full_like(a, 0.5), xs) / np.log(10.0)
        for i in np.flatnonzero(~np.isfinite(values)):
            values[i] = _log10_p_mpmath(float(t2.reshape(-1)[tiny[i]]), float(dof.reshape(-1)[tiny[i]]))
        flat_lp[tiny] = values
    return p, log10_p
