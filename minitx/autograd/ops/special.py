"""The error function, which NumPy lacks (GELU needs it).

Two paths, chosen by dtype:

* float32 (and lower): a rational approximation ``x * P(x^2) / Q(x^2)`` on
  [-4, 4] (erf is +-1 to float32 precision outside) in float32 arithmetic: about
  20 in-place array passes, cheap enough for every training step, and GELU built
  on it is as accurate as PyTorch's float32 GELU (worst error ~2 eps * max(|x|, 1)
  against PyTorch's 2.9 on a dense sweep of [-8, 8]).
* float64: the Maclaurin series for |x| < 3 (60 terms, error < 1e-14) and the
  continued fraction of erfc for |x| >= 3 (error < 1e-16 there), so float64
  gradient checks see the exact function.
"""
import math

from ...backend import get_array_module

# float32 rational approximation of erf on [-4, 4]: numerator odd, denominator even
_ALPHA = (-1.60960333262415e-02, -2.95459980854025e-03, -7.34990630326855e-04,
          -5.69250639462346e-05, -2.10102402082508e-06, 2.77068142495902e-08,
          -2.72614225801306e-10)        # coefficients of x^1, x^3, ..., x^13
_BETA = (-1.42647390514189e-02, -7.37332916720468e-03, -1.68282697438203e-03,
         -2.13374055278905e-04, -1.45660718464996e-05)   # of x^0, x^2, ..., x^8

_SERIES_TERMS = 60
_CF_TERMS = 60


def _erf_float32(x, xp, out=None):
    dt = x.dtype.type
    x = xp.clip(x, dt(-4.0), dt(4.0))
    x2 = x * x
    p = x2 * dt(_ALPHA[-1])
    for a in reversed(_ALPHA[1:-1]):      # Horner in x^2, in place (no temporaries)
        p += dt(a)
        p *= x2
    p += dt(_ALPHA[0])
    p *= x
    q = x2 * dt(_BETA[-1])
    for b in reversed(_BETA[1:-1]):
        q += dt(b)
        q *= x2
    q += dt(_BETA[0])
    return xp.divide(p, q, out=out)


def _erf_float64(x, xp):
    ax = xp.abs(x)
    small = ax < 3.0
    # series: erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
    xs = xp.where(small, x, 0.0)
    x2 = xs * xs
    term = xs.copy()                      # x^(2n+1) (-1)^n / n!
    total = xs.copy()
    for n in range(1, _SERIES_TERMS):
        term *= -x2 / n
        total += term / (2 * n + 1)
    series = total * (2.0 / math.sqrt(math.pi))
    # continued fraction: erfc(z) = exp(-z^2)/sqrt(pi) / (z + (1/2)/(z + 1/(z + (3/2)/(z + ...))))
    z = xp.where(small, 3.0, ax)
    f = z.copy()
    for k in range(_CF_TERMS, 0, -1):
        f = z + (k / 2.0) / f
    erfc = xp.exp(-z * z) / (math.sqrt(math.pi) * f)
    tail = xp.sign(x) * (1.0 - erfc)
    return xp.where(small, series, tail)


def erf(x, out=None):
    """Elementwise error function of a numpy/cupy array (dtype preserved; ``out`` optional)."""
    xp = get_array_module(x)
    if x.dtype == xp.float64:
        y = _erf_float64(x, xp)
    elif x.dtype == xp.float32:
        return _erf_float32(x, xp, out)
    else:
        y = _erf_float32(x.astype(xp.float32), xp).astype(x.dtype)
    if out is None:
        return y
    out[...] = y
    return out
