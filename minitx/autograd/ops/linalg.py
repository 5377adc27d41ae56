"""Matrix multiplication, batched and broadcasting like ``numpy.matmul``.

Every product goes through ``backend.matmul`` (``a @ b`` on the CPU; minitx's
own cuBLAS call on the GPU, which a CUDA graph can capture).
"""
from ...backend import matmul as mm
from ...errors import ShapeError
from ..function import Function


def _broadcast_batch(a_shape, b_shape):
    """Check (..., m, k) @ (..., k, n) shapes; raise ShapeError naming both."""
    bad = a_shape[-1] != b_shape[-2]
    for x, y in zip(reversed(a_shape[:-2]), reversed(b_shape[:-2])):
        bad = bad or (x != y and x != 1 and y != 1)
    if bad:
        raise ShapeError(
            f"matmul: shapes {a_shape} and {b_shape} are incompatible (need "
            "(..., m, k) @ (..., k, n) with broadcastable batch dimensions)"
        )


class MatMul(Function):
    """Batched, broadcasting matrix product a @ b."""
    def forward(self, a, b):
        self.a, self.b = a, b
        return mm(a, b)                                # (..., m, k) @ (..., k, n) -> (..., m, n)

    def backward(self, g):
        xp = self.xp
        ga = mm(g, xp.swapaxes(self.b, -1, -2)) if self.needs_grad[0] else None   # (m, n) @ (n, k)
        gb = mm(xp.swapaxes(self.a, -1, -2), g) if self.needs_grad[1] else None   # (k, m) @ (m, n)
        return ga, gb

    def backward_graph(self, g):
        a, b = self.inputs
        ga = matmul(g, b.transpose(-1, -2)) if self.needs_grad[0] else None
        gb = matmul(a.transpose(-1, -2), g) if self.needs_grad[1] else None
        return ga, gb


def matmul(a, b):
    """Matrix product ``a @ b`` of tensors with at least one dimension.

    Leading (batch) dimensions broadcast; a 1-D operand is treated as a row
    (left) or column (right) vector and that axis is dropped from the result.
    """
    from .elementwise import _pair
    from .shape import reshape
    a, b = _pair(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"matmul needs tensors with at least one dimension, got shapes {a.shape} and {b.shape}")
    a2 = reshape(a, (1, a.shape[0])) if a.ndim == 1 else a
    b2 = reshape(b, (b.shape[0], 1)) if b.ndim == 1 else b
    _broadcast_batch(a2.shape, b2.shape)
    out = MatMul.apply(a2, b2)
    if a.ndim == 1:
        out = reshape(out, out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = reshape(out, out.shape[:-1])
    return out


class Linear(Function):
    """``x @ W.T (+ b)`` as one node: x (..., I), W (O, I) as in PyTorch, b (O,).

    The leading axes of x are flattened so the product is one large matrix
    multiply (one BLAS call) rather than a batch of small ones.
    """

    def forward(self, x, weight, *bias):
        self.x, self.weight = x, weight
        x2 = x.reshape(-1, x.shape[-1])                   # (N, I)
        y = mm(x2, weight.T)                              # (N, I) @ (I, O) -> (N, O)
        if bias:
            y += bias[0]
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, g):
        g2 = g.reshape(-1, g.shape[-1])                   # (N, O)
        gx = mm(g2, self.weight).reshape(self.x.shape) if self.needs_grad[0] else None  # (N, O) @ (O, I)
        gw = None
        if self.needs_grad[1]:
            gw = mm(g2.T, self.x.reshape(-1, self.x.shape[-1]))  # (O, N) @ (N, I)
        gb = ()
        if len(self.inputs) == 3:                         # dy/db = 1: column sums, as one BLAS call
            gb = (mm(self.xp.ones(g2.shape[0], dtype=g2.dtype), g2) if self.needs_grad[2] else None,)
        return (gx, gw) + gb

    def backward_graph(self, g):
        from .shape import reshape
        x, weight = self.inputs[:2]
        g2 = reshape(g, (-1, weight.shape[0]))                                  # (N, O)
        gx = reshape(matmul(g2, weight), x.shape) if self.needs_grad[0] else None   # (N, O) @ (O, I)
        gw = matmul(g2.T, reshape(x, (-1, x.shape[-1]))) if self.needs_grad[1] else None  # (O, N) @ (N, I)
        gb = (g2.sum(axis=0) if self.needs_grad[2] else None,) if len(self.inputs) == 3 else ()
        return (gx, gw) + gb


def linear(x, weight, bias=None):
    """Affine map ``x @ weight.T + bias``: x (..., I), weight (O, I), bias (O,) -> (..., O)."""
    if weight.ndim != 2 or x.shape[-1:] != weight.shape[1:]:
        raise ShapeError(f"linear: input of shape {x.shape} does not fit weight of shape "
                         f"{weight.shape} (need input (..., {weight.shape[-1]}))")
    if bias is None:
        return Linear.apply(x, weight)
    return Linear.apply(x, weight, bias)
