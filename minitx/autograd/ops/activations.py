"""Activations: tanh, sigmoid, relu and GELU (exact erf form or tanh approximation).

Each op keeps what its backward needs.  GELU keeps its derivative; on the
CPU in float32 its ~25 NumPy passes run block by block so the temporaries stay
in the CPU cache (``backend.cache_blocks``); on the GPU it is one fused kernel
each way (``gpu_kernels.gelu_forward`` / ``gelu_backward``).
"""
import math

from ... import backend
from ...errors import InputError
from ..function import Function
from . import gpu_kernels
from .special import erf, normal_cdf_pdf_float32_


class Tanh(Function):
    """Hyperbolic tangent."""
    saves_output = True
    saves_inputs = False

    def forward(self, x):
        self.y = self.xp.tanh(x)
        return self.y

    def backward(self, g):
        return (g * (1 - self.y * self.y),)   # d tanh = 1 - tanh^2

    def backward_graph(self, g):
        y = tanh(self.inputs[0])
        return (g * (1 - y * y),)


class Sigmoid(Function):
    """Logistic sigmoid 1 / (1 + e ** -x)."""
    saves_output = True
    saves_inputs = False

    def forward(self, x):
        # 1/(1+e^-x) = e^x/(1+e^x) for x < 0; with e = e^-|x| <= 1 there is no overflow
        # and small outputs keep their relative precision (1 + tanh(x/2) would round to 0)
        xp = self.xp
        e = xp.exp(-xp.abs(x))
        self.y = xp.where(x >= 0, e.dtype.type(1), e) / (1 + e)
        return self.y

    def backward(self, g):
        return (g * self.y * (1 - self.y),)   # d s = s (1 - s)

    def backward_graph(self, g):
        s = sigmoid(self.inputs[0])
        return (g * (s * (1 - s)),)


class Relu(Function):
    """max(x, 0)."""
    def forward(self, x):
        self.pos = x > 0
        return x * self.pos

    def backward(self, g):
        return (g * self.pos,)                # 1 where x > 0, else 0

    def backward_graph(self, g):
        return (g * self.pos.astype(g.dtype),)   # a constant mask: relu'' = 0


_SQRT_2 = math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class Gelu(Function):
    """GELU: ``x * Phi(x)`` with the exact erf form, or the tanh approximation.

    On the CPU the exact form computes its derivative ``Phi(x) + x phi(x)`` in
    the forward pass and keeps only that array: backward is one multiply.  In
    float32 Phi and phi come from one exp, block by block in the cache.  On the
    GPU the backward kernel recomputes Phi from x.
    """

    def forward(self, x, approximate="none"):
        self.approximate = approximate
        if approximate == "tanh":
            self.x = x
            self.t = self.xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1 + self.t)
        if self.xp is not backend.np:
            self.x = x
            return gpu_kernels.gelu_forward()(x)            # one kernel; backward recomputes Phi
        if x.dtype == backend.np.float32:
            return self._forward_float32(x)
        cdf = 0.5 * (1.0 + erf(x * (1.0 / _SQRT_2)))        # Phi(x) = (1 + erf(x / sqrt 2)) / 2
        if self.needs_grad is not None:
            self.deriv = cdf + x * backend.np.exp(-0.5 * x * x) * _INV_SQRT_2PI   # Phi + x phi
        return x * cdf

    def _forward_float32(self, x):
        """y = x Phi(x) (and the derivative, when recorded), block by block (NumPy float32)."""
        np = backend.np
        flat = x.reshape(-1)
        y = np.empty_like(flat)
        record = self.needs_grad is not None
        deriv = np.empty_like(flat) if record else None
        blocks = backend.cache_blocks(flat.size, np)
        cdf = np.empty_like(flat[blocks[0]])                # scratch, one block
        pdf = np.empty_like(cdf) if not record else None
        for b in blocks:
            n = flat[b].size                               # the last block may be shorter
            c, p = normal_cdf_pdf_float32_(flat[b], cdf[:n], deriv[b] if record else pdf[:n],
                                           scratch=y[b].view(np.int32))   # y is written last
            np.multiply(flat[b], c, out=y[b])             # x Phi(x)
            if record:
                p *= flat[b]
                p += c                                    # Phi(x) + x phi(x), in deriv
        if record:
            self.deriv = deriv.reshape(x.shape)
        return y.reshape(x.shape)

    def backward(self, g):
        if self.approximate == "tanh":
            # d/dx 0.5 x (1 + t) = 0.5 (1 + t) + 0.5 x (1 - t^2) u',  u' = c (1 + 3 * 0.044715 x^2)
            x = self.x
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return (g * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * du),)
        if self.xp is not backend.np:
            return (gpu_kernels.gelu_backward()(self.x, g),)
        return (g * self.deriv,)


def tanh(x):
    """Elementwise hyperbolic tangent."""
    return Tanh.apply(x)


def sigmoid(x):
    """Elementwise logistic sigmoid 1 / (1 + e**-x)."""
    return Sigmoid.apply(x)


def relu(x):
    """Elementwise max(x, 0)."""
    return Relu.apply(x)


def gelu(x, approximate="none"):
    """GELU activation; ``approximate='none'`` (exact erf form, PyTorch's default) or ``'tanh'``."""
    if approximate not in ("none", "tanh"):
        raise InputError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(x, approximate=approximate)
