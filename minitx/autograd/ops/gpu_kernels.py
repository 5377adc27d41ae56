"""Fused CUDA kernels for the hot chains of a training step (GPU only).

Each kernel is a CuPy ``ElementwiseKernel`` or ``ReductionKernel``: one launch
that reads its inputs once, instead of one launch and one full pass over
memory per NumPy-style operation.  ``T`` is the array's float type (float32 or
float64), so one kernel serves both.  They are compiled on first use and cached.

The ops that call them (``Gelu``, ``LayerNorm``, ``CrossEntropy``,
``ScaledDotProductAttention``, the Adam update) keep their NumPy code as the
reference path: the CPU runs it, and ``tests/test_gpu_kernels.py`` checks that
the GPU kernels give the same numbers.  CuPy is reached through
``backend.array_module``: this file never imports it.
"""
from functools import lru_cache

import numpy as np

from ... import backend


def _cp():
    return backend.array_module("gpu")


# ------------------------------------------------------------------ GELU
@lru_cache(maxsize=None)
def gelu_forward():
    """y = x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2."""
    return _cp().ElementwiseKernel(
        "T x", "T y",
        "y = x * (T(0.5) + T(0.5) * erf(x * T(0.70710678118654752)))",
        "minitx_gelu_forward")


@lru_cache(maxsize=None)
def gelu_backward():
    """dx = g * (Phi(x) + x * phi(x)), phi the normal density."""
    return _cp().ElementwiseKernel(
        "T x, T g", "T dx",
        """T cdf = T(0.5) + T(0.5) * erf(x * T(0.70710678118654752));
           T pdf = exp(T(-0.5) * x * x) * T(0.39894228040143268);
           dx = g * (cdf + x * pdf)""",
        "minitx_gelu_backward")


# ------------------------------------------------------------- LayerNorm
@lru_cache(maxsize=None)
def row_sum_sq_dev():
    """sum over the reduced axis of (x - mean)^2 (mean broadcast along it)."""
    return _cp().ReductionKernel(
        "T x, T mean", "T ssq",
        "(x - mean) * (x - mean)", "a + b", "ssq = a", "0",
        "minitx_row_sum_sq_dev")


@lru_cache(maxsize=None)
def layer_norm_rstd():
    """rstd = 1 / sqrt(ssq / D + eps)."""
    return _cp().ElementwiseKernel(
        "T ssq, T inv_d, T eps", "T rstd",
        "rstd = T(1) / sqrt(ssq * inv_d + eps)",
        "minitx_layer_norm_rstd")


@lru_cache(maxsize=None)
def layer_norm_apply(with_bias):
    """y = (x - mean) * rstd * w (+ b)."""
    if with_bias:
        return _cp().ElementwiseKernel(
            "T x, T mean, T rstd, T w, T b", "T y",
            "y = (x - mean) * rstd * w + b", "minitx_layer_norm_apply_bias")
    return _cp().ElementwiseKernel(
        "T x, T mean, T rstd, T w", "T y",
        "y = (x - mean) * rstd * w", "minitx_layer_norm_apply")


@lru_cache(maxsize=None)
def sum_of_product():
    """sum over the reduced axis of a * b (broadcast)."""
    return _cp().ReductionKernel(
        "T a, T b", "T s", "a * b", "a + b", "s = a", "0", "minitx_sum_of_product")


@lru_cache(maxsize=None)
def layer_norm_sums():
    """sum over the reduced axis of g * w * xhat, xhat = (x - mean) * rstd."""
    return _cp().ReductionKernel(
        "T g, T w, T x, T mean, T rstd", "T s",
        "g * w * (x - mean) * rstd", "a + b", "s = a", "0", "minitx_layer_norm_sums")


@lru_cache(maxsize=None)
def layer_norm_dx():
    """dx = rstd * (g w - mean(g w) - xhat * mean(g w xhat))."""
    return _cp().ElementwiseKernel(
        "T g, T w, T x, T mean, T rstd, T s1, T s2, T inv_d", "T dx",
        """T xhat = (x - mean) * rstd;
           dx = rstd * (g * w - s1 * inv_d - xhat * s2 * inv_d)""",
        "minitx_layer_norm_dx")


@lru_cache(maxsize=None)
def layer_norm_dw():
    """sum over rows of g * xhat (the weight's gradient)."""
    return _cp().ReductionKernel(
        "T g, T x, T mean, T rstd", "T s",
        "g * (x - mean) * rstd", "a + b", "s = a", "0", "minitx_layer_norm_dw")


# ------------------------------------------------- softmax cross-entropy
@lru_cache(maxsize=None)
def sum_exp_shifted():
    """sum over the reduced axis of exp(x - m) (m broadcast along it)."""
    return _cp().ReductionKernel(
        "T x, T m", "T s", "exp(x - m)", "a + b", "s = a", "0", "minitx_sum_exp_shifted")


@lru_cache(maxsize=None)
def cross_entropy_rows():
    """Per-row loss from logits (N, V) (raw), log-sum-exp and the row mean of the logits.

    ``(1 - s) * (lse - x[t]) + s * (lse - mean_x)``; 0 for ignored rows and
    NaN for targets outside [0, V) (no host sync needed to report them).
    """
    return _cp().ElementwiseKernel(
        "raw T logits, S t, T lse, T mean_x, int64 V, S ignore, T smooth, T nan", "T loss",
        """if (t == ignore) {
               loss = T(0);
           } else if (t < 0 || t >= V) {
               loss = nan;
           } else {
               T nll = lse - logits[i * V + t];
               loss = (T(1) - smooth) * nll + smooth * (lse - mean_x);
           }""",
        "minitx_cross_entropy_rows")


@lru_cache(maxsize=None)
def cross_entropy_grad():
    """d loss / d logits for (N, V): scale_row * (softmax - (1 - s) onehot(t) - s / V).

    Elementwise over (N, V) with row vectors broadcast; column = i % V.
    Rows with scale 0 (ignored targets) get exactly 0, even for NaN logits.
    """
    return _cp().ElementwiseKernel(
        "T x, T lse, S t, T scale, int64 V, T smooth", "T dx",
        """if (scale == T(0)) {
               dx = T(0);
           } else {
               T target = smooth / T(V) + ((i % V) == t ? T(1) - smooth : T(0));
               dx = (exp(x - lse) - target) * scale;
           }""",
        "minitx_cross_entropy_grad")


# --------------------------------------------------- attention softmax
@lru_cache(maxsize=None)
def masked_row_max(dtype_char):
    """max over the reduced axis of s where keep, else the dtype's lowest finite value.

    NaN wins the max (CUDA's max would drop it), so a NaN score makes its row NaN, as on the CPU.
    """
    lowest = repr(float(np.finfo(np.dtype(dtype_char)).min))
    return _cp().ReductionKernel(
        "T s, bool keep", "T m",
        f"keep ? s : T({lowest})", "(a > b || isnan(a)) ? a : b", "m = a", f"T({lowest})",
        "minitx_masked_row_max")


@lru_cache(maxsize=None)
def masked_exp_sum():
    """sum over the reduced axis of exp((s - m) * scale) where keep."""
    return _cp().ReductionKernel(
        "T s, bool keep, T m, T scale", "T d",
        "keep ? exp((s - m) * scale) : T(0)", "a + b", "d = a", "0",
        "minitx_masked_exp_sum")


@lru_cache(maxsize=None)
def masked_softmax_apply():
    """p = exp((s - m) * scale) / d where keep, else 0 (0 too for a row with no key; NaN stays NaN)."""
    return _cp().ElementwiseKernel(
        "T s, bool keep, T m, T d, T scale", "T p",
        "p = (keep && d != T(0)) ? exp((s - m) * scale) / d : T(0)",
        "minitx_masked_softmax_apply")


@lru_cache(maxsize=None)
def softmax_backward():
    """ds = p * (dp - sum(dp * p)) * scale (the softmax rule, then the score scale)."""
    return _cp().ElementwiseKernel(
        "T dp, T p, T dot, T scale", "T ds",
        "ds = p * (dp - dot) * scale",
        "minitx_softmax_backward")


# ------------------------------------------------------------------- Adam
@lru_cache(maxsize=None)
def adam_update():
    """One Adam / AdamW step over flat buffers, in place in p, m and v.

    ``hyper`` = [lr, t] lives on the device, so a captured CUDA graph reads the
    current learning rate and step count at every replay.  ``l2`` is Adam's
    weight decay (added to the gradient), ``wd`` AdamW's (decoupled).
    """
    return _cp().ElementwiseKernel(
        "T g, raw float64 hyper, float64 b1, float64 b2, float64 eps, float64 l2, float64 wd",
        "T p, T m, T v",
        """double lr = hyper[0], t = hyper[1];
           double c = sqrt(1.0 - pow(b2, t));
           T step = T(-lr * c / (1.0 - pow(b1, t)));
           T gg = g + T(l2) * p;
           p = p * T(1.0 - lr * wd);
           m = T(b1) * m + T(1.0 - b1) * gg;
           v = T(b2) * v + T(1.0 - b2) * gg * gg;
           p = p + step * m / (sqrt(v) + T(eps * c))""",
        "minitx_adam_update")
