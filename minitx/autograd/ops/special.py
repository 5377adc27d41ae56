"""The error function, which NumPy lacks, and the standard normal CDF / PDF pair
that GELU needs.

* ``erf``: the Maclaurin series for |x| < 3 (60 terms, error < 1e-14) and the
  continued fraction of erfc for |x| >= 3 (error < 1e-16 there), in float64, so
  float64 gradient checks see the exact function.  Other dtypes are computed in
  float64 and rounded back.
* ``normal_cdf_pdf_float32_``: Phi(x) and phi(x) together in float32 from one
  exp (Abramowitz & Stegun 7.1.26), the fast path of GELU's CPU forward.
"""
import math

from ...backend import get_array_module

_SERIES_TERMS = 60
_CF_TERMS = 60


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


def erf(x):
    """Elementwise error function of a numpy/cupy float array (dtype preserved)."""
    xp = get_array_module(x)
    if x.dtype == xp.float64:
        return _erf_float64(x, xp)
    return _erf_float64(x.astype(xp.float64), xp).astype(x.dtype)


# Abramowitz & Stegun 7.1.26: erfc(z) = t (a1 + t (a2 + ... + t a5)) exp(-z^2), t = 1 / (1 + p z),
# z >= 0, absolute error < 1.5e-7.  With z = |x| / sqrt 2, exp(-z^2) = sqrt(2 pi) phi(x), so
# Phi(-|x|) = erfc(z) / 2 = t (b1 + t (b2 + ...)) phi(x) with b_i = a_i sqrt(2 pi) / 2.
_AS_P = 0.3275911 / math.sqrt(2.0)
_AS_B = tuple(a * math.sqrt(2.0 * math.pi) / 2.0 for a in
              (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429))
# In tau = k t with k = b5 ** (1/5) the polynomial is monic: t (b1 + ... + t b5) =
# tau (c1 + tau (c2 + tau (c3 + tau (c4 + tau)))), c_i = b_i / k^i, one pass fewer; and
# tau = k / (1 + p z) = (k / p) / (z + 1 / p) is one divide.
_AS_K = _AS_B[-1] ** 0.2
_AS_C = tuple(b / _AS_K ** (i + 1) for i, b in enumerate(_AS_B[:-1]))
_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SIGN_BIT = -2 ** 31                      # int32 with only the sign bit set


def normal_cdf_pdf_float32_(x, cdf, pdf, scratch):
    """Phi(x) into ``cdf`` and phi(x) = exp(-x^2/2) / sqrt(2 pi) into ``pdf``: float32 NumPy arrays.

    ``scratch``: an int32 array of x's shape.  20 in-place passes, one of them an
    exp.  Phi's absolute error is about 3e-7 (PyTorch's float32 GELU is no
    better); like PyTorch's, Phi(x) rounds to 0 below x ~ -5.5.  Returns (cdf, pdf).
    """
    np = get_array_module(x)
    f = np.float32
    tau = np.abs(x, out=pdf)                # pdf holds tau until phi is computed
    tau += f(1.0 / _AS_P)
    np.divide(f(_AS_K / _AS_P), tau, out=tau)   # tau = k / (1 + p |x|), p = 0.3275911 / sqrt 2
    q = np.add(tau, f(_AS_C[-1]), out=cdf)
    for c in reversed(_AS_C[:-1]):          # Horner: q = tau (c1 + tau (c2 + tau (c3 + tau (c4 + tau))))
        q *= tau
        q += f(c)
    q *= tau
    phi = np.multiply(x, f(-0.5), out=pdf)
    with np.errstate(over="ignore"):        # |x| > 1.8e19: x^2 = inf, phi = exp(-inf) = 0
        phi *= x
    phi -= f(_LOG_SQRT_2PI)
    np.exp(phi, out=phi)                    # phi(x) = exp(-x^2/2 - log sqrt(2 pi))
    q *= phi                                # Phi(-|x|)
    np.subtract(f(0.5), q, out=q)           # Phi(|x|) - 1/2 (>= -6e-8: rounding near 0) ...
    sign = np.bitwise_and(x.view(np.int32), _SIGN_BIT, out=scratch)
    np.bitwise_or(q.view(np.int32), sign, out=q.view(np.int32))   # ... given the sign of x
    q += f(0.5)                             # Phi(x) = 1/2 + sign(x) (Phi(|x|) - 1/2)
    return q, phi
