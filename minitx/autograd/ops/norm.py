"""Layer normalisation as one fused op, forward and backward side by side.

On the CPU both directions run a block of rows at a time, so each block's
handful of NumPy passes (row means and dot products as BLAS matrix-vector
products, the rest in place) reads data the previous pass left in the cache.
On the GPU each step is a fused kernel (``gpu_kernels``).
"""
from ... import backend
from ...errors import ShapeError
from ..function import Function
from . import gpu_kernels


class LayerNorm(Function):
    """Normalise the last axis to zero mean and unit variance, then scale (and shift).

    Saves for backward xhat (N, D) and 1/std (N,) on the CPU; x, mean and 1/std on the GPU.
    """

    def forward(self, x, weight, *bias, eps):
        xp = self.xp
        D = x.shape[-1]
        x2 = x.reshape(-1, D)                                   # (N, D)
        if xp is not backend.np:
            return self._forward_gpu(x2, weight, bias, eps).reshape(x.shape)
        dtype = xp.result_type(x2, weight, *bias)              # as NumPy would promote x * weight
        x2 = x2.astype(dtype, copy=False)
        N = x2.shape[0]
        ones = xp.ones(D, dtype=dtype)
        xhat, y = xp.empty_like(x2), xp.empty_like(x2)
        rstd = xp.empty(N, dtype=dtype)
        for b in backend.cache_blocks(N, xp, width=D):
            xc = xp.subtract(x2[b], ((x2[b] @ ones) / D)[:, None], out=xhat[b])   # x - mean (sum, then
            var = xp.einsum("nd,nd->n", xc, xc) / D                             # divide: exact for equal values)
            r = xp.divide(1.0, xp.sqrt(var + eps), out=rstd[b])
            xc *= r[:, None]                                                    # xhat, in place
            xp.multiply(xc, weight, out=y[b])
            if bias:
                y[b] += bias[0]
        self.xhat, self.rstd, self.weight, self.ones = xhat, rstd, weight, ones
        return y.reshape(x.shape)

    def backward(self, g):
        xp = self.xp
        if xp is not backend.np:
            return self._backward_gpu(g)
        xhat, rstd = self.xhat, self.rstd
        N, D = xhat.shape
        g2 = g.reshape(N, D)                                    # (N, D)
        want_w, want_b = self.needs_grad[1], len(self.inputs) == 3 and self.needs_grad[2]
        gw = xp.zeros(D, dtype=g.dtype) if want_w else None
        gb = xp.ones(N, dtype=g.dtype) @ g2 if want_b else None       # dy/db = 1: column sums (N,) @ (N, D)
        gx = xp.empty_like(g2) if self.needs_grad[0] else None
        for b in backend.cache_blocks(N, xp, width=D):
            g_b, xh = g2[b], xhat[b]
            if want_w:
                gw += xp.einsum("nd,nd->d", g_b, xh)               # dy/dw = xhat
            if gx is not None:
                gh = xp.multiply(g_b, self.weight, out=gx[b])       # dL/dxhat
                m1 = (gh @ self.ones) / D                           # mean(gh)          (n,)
                m2 = xp.einsum("nd,nd->n", gh, xh) / D              # mean(gh * xhat)   (n,)
                # dx = rstd * (gh - mean(gh) - xhat * mean(gh * xhat)), in place in gh
                gh -= xh * m2[:, None]
                gh -= m1[:, None]
                gh *= rstd[b, None]
        gx = None if gx is None else gx.reshape(g.shape)
        return (gx, gw) + ((gb,) if len(self.inputs) == 3 else ())

    def _forward_gpu(self, x2, weight, bias, eps):
        """Fused kernels: row mean, row sum of squares, then one pass writing y (N, D)."""
        D = x2.shape[1]
        mean = x2.mean(axis=1, keepdims=True)                                        # (N, 1)
        ssq = gpu_kernels.row_sum_sq_dev()(x2, mean, axis=1, keepdims=True)          # (N, 1)
        rstd = gpu_kernels.layer_norm_rstd()(ssq, 1.0 / D, eps)                       # (N, 1)
        self.x2, self.mean, self.rstd, self.weight = x2, mean, rstd, weight
        return gpu_kernels.layer_norm_apply(bool(bias))(x2, mean, rstd, weight, *bias)

    def _backward_gpu(self, g):
        """The CPU backward's formulas, each row sum and the dx pass one kernel."""
        x2, mean, rstd, w = self.x2, self.mean, self.rstd, self.weight
        g2 = g.reshape(x2.shape)                                                     # (N, D)
        gw = gpu_kernels.layer_norm_dw()(g2, x2, mean, rstd, axis=0) if self.needs_grad[1] else None
        gb = (g2.sum(axis=0) if self.needs_grad[2] else None,) if len(self.inputs) == 3 else ()
        gx = None
        if self.needs_grad[0]:
            s1 = gpu_kernels.sum_of_product()(g2, w, axis=1, keepdims=True)          # sum(g w)      (N, 1)
            s2 = gpu_kernels.layer_norm_sums()(g2, w, x2, mean, rstd, axis=1, keepdims=True)  # sum(g w xhat)
            gx = gpu_kernels.layer_norm_dx()(g2, w, x2, mean, rstd, s1, s2, 1.0 / x2.shape[1]).reshape(g.shape)
        return (gx, gw) + gb


def layer_norm(x, weight, bias=None, eps=1e-5):
    """Layer normalisation over the last axis with gain ``weight`` (D,) and optional ``bias`` (D,)."""
    if x.ndim == 0:
        raise ShapeError("layer_norm: x must have at least one axis (the one normalised), got a 0-d tensor")
    if weight.shape != x.shape[-1:]:
        raise ShapeError(f"layer_norm: weight shape {weight.shape} must be ({x.shape[-1]},), the last axis of x {x.shape}")
    if bias is None:
        return LayerNorm.apply(x, weight, eps=eps)
    return LayerNorm.apply(x, weight, bias, eps=eps)
