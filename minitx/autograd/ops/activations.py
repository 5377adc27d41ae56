"""Activations: tanh, sigmoid, relu and GELU (exact erf form or tanh approximation).

Each op keeps what its backward needs; on the CPU, GELU runs its ~25 NumPy
passes block by block so the temporaries stay in the CPU cache
(``backend.cache_blocks``); on the GPU it is one fused kernel each way
(``gpu_kernels.gelu_forward`` / ``gelu_backward``).
"""
import math

from ... import backend
from ...errors import InputError
from ..function import Function
from . import gpu_kernels
from .special import erf


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
    """GELU: ``x * Phi(x)`` with the exact erf form, or the tanh approximation."""

    def forward(self, x, approximate="none"):
        self.x, self.approximate = x, approximate
        if approximate == "tanh":
            self.t = self.xp.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3))
            return 0.5 * x * (1 + self.t)
        if self.xp is not backend.np:
            return gpu_kernels.gelu_forward()(x)            # one kernel; backward recomputes Phi
        flat = x.reshape(-1)
        cdf, y = self.xp.empty_like(flat), self.xp.empty_like(flat)
        for b in backend.cache_blocks(flat.size, self.xp):
            c = erf(flat[b] * (1.0 / _SQRT_2), out=cdf[b])    # Phi(x) = (1 + erf(x / sqrt 2)) / 2
            c += 1.0
            c *= 0.5
            self.xp.multiply(flat[b], c, out=y[b])            # x Phi(x)
        self.cdf = cdf
        return y.reshape(x.shape)

    def backward(self, g):
        x = self.x
        if self.approximate == "tanh":
            # d/dx 0.5 x (1 + t) = 0.5 (1 + t) + 0.5 x (1 - t^2) u',  u' = c (1 + 3 * 0.044715 x^2)
            du = _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
            return (g * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * du),)
        if self.xp is not backend.np:
            return (gpu_kernels.gelu_backward()(x, g),)
        flat, gf = x.reshape(-1), g.reshape(-1)
        out = self.xp.empty_like(flat)
        for b in backend.cache_blocks(flat.size, self.xp):
            d = self.xp.multiply(flat[b], flat[b], out=out[b])  # d x Phi(x) = Phi + x phi, in place:
            d *= -0.5
            self.xp.exp(d, out=d)
            d *= _INV_SQRT_2PI                                # phi(x)
            d *= flat[b]
            d += self.cdf[b]
            d *= gf[b]
        return (out.reshape(x.shape),)


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
