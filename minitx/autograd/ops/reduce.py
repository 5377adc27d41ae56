"""Reductions over any axes, with or without ``keepdims``: sum, mean, max, logsumexp.

Their backward broadcasts the output gradient back over the reduced axes, so
each first restores the reduced axes as size-1 dimensions (``_keep``).
"""
import builtins

from ...errors import ShapeError
from ..function import Function


def normalize_axes(axis, ndim):
    """``axis`` (None, int or tuple, negatives allowed) as a sorted tuple of non-negative ints."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    n = builtins.max(ndim, 1)      # the builtin: this module's ``max`` is the op below
    for a in axes:
        if not -ndim <= a < n:
            raise ShapeError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % n)
    return tuple(sorted(set(out)))


def _keep(g, shape, axes, keepdims):
    """Reshape a reduced gradient so it broadcasts against the input ``shape``."""
    if keepdims:
        return g
    return g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))


def _kept_shape(shape, axes):
    """``shape`` with the reduced ``axes`` as size 1 (the keepdims shape)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Sum(Function):
    """Sum over axes."""
    saves_inputs = False

    def forward(self, x, axis, keepdims):
        self.shape, self.axes, self.keepdims = x.shape, normalize_axes(axis, x.ndim), keepdims
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        g = _keep(g, self.shape, self.axes, self.keepdims)
        return (self.xp.broadcast_to(g, self.shape),)     # d sum / dx_i = 1

    def backward_graph(self, g):
        from .shape import expand, reshape
        return (expand(reshape(g, _kept_shape(self.shape, self.axes)), self.shape),)


class Mean(Function):
    """Mean over axes."""
    saves_inputs = False

    def forward(self, x, axis, keepdims):
        self.shape, self.axes, self.keepdims = x.shape, normalize_axes(axis, x.ndim), keepdims
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, g):
        g = _keep(g, self.shape, self.axes, self.keepdims) / self.count
        return (self.xp.broadcast_to(g, self.shape),)     # d mean / dx_i = 1/n

    def backward_graph(self, g):
        from .shape import expand, reshape
        return (expand(reshape(g, _kept_shape(self.shape, self.axes)) / self.count, self.shape),)


class Max(Function):
    """Maximum over axes; ties share the gradient equally."""

    def forward(self, x, axis, keepdims):
        self.axes, self.keepdims = normalize_axes(axis, x.ndim), keepdims
        if x.size == 0:
            raise ShapeError(f"max of an empty tensor of shape {x.shape}")
        y = x.max(axis=self.axes, keepdims=True)
        self.hit = x == y                                 # where the max is attained
        return y if keepdims else y.reshape(
            tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, g):
        g = _keep(g, self.hit.shape, self.axes, self.keepdims)
        count = self.hit.sum(axis=self.axes, keepdims=True)
        return (g * self.hit / count,)

    def backward_graph(self, g):
        from .shape import reshape
        share = self.hit / self.hit.sum(axis=self.axes, keepdims=True)   # a constant: max'' = 0
        return (reshape(g, _kept_shape(self.hit.shape, self.axes)) * share.astype(g.dtype),)


class LogSumExp(Function):
    """``log(sum(exp(x)))`` over axes, stable for large or very negative inputs."""
    saves_inputs = False

    def forward(self, x, axis, keepdims):
        xp = self.xp
        self.axes, self.keepdims = normalize_axes(axis, x.ndim), keepdims
        m = x.max(axis=self.axes, keepdims=True)
        e = xp.exp(x - m)
        s = e.sum(axis=self.axes, keepdims=True)
        self.p = e / s                                    # softmax(x): the gradient
        y = m + xp.log(s)
        return y if keepdims else y.reshape(
            tuple(n for i, n in enumerate(x.shape) if i not in self.axes))

    def backward(self, g):
        g = _keep(g, self.p.shape, self.axes, self.keepdims)
        return (g * self.p,)                              # d lse / dx = softmax(x)

    def backward_graph(self, g):
        from .elementwise import exp
        from .shape import reshape
        x = self.inputs[0]
        p = exp(x - logsumexp(x, axis=self.axes, keepdims=True))   # softmax(x), differentiable
        return (reshape(g, _kept_shape(x.shape, self.axes)) * p,)


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (None = all; int or tuple)."""
    return Sum.apply(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (None = all; int or tuple)."""
    return Mean.apply(x, axis=axis, keepdims=keepdims)


def max(x, axis=None, keepdims=False):
    """Maximum over ``axis``; the gradient is split equally between tied maxima."""
    return Max.apply(x, axis=axis, keepdims=keepdims)


def logsumexp(x, axis=-1, keepdims=False):
    """Stable ``log(sum(exp(x), axis))``."""
    return LogSumExp.apply(x, axis=axis, keepdims=keepdims)
