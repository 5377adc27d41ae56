"""Scaled dot-product attention as one fused op: heads split, scores, mask,
softmax, dropout, weighted sum and heads merged, forward and backward together.

Shapes: B batch, T queries, S keys, H heads, E head dim, I = H * E.
Inputs come packed, straight from one projection matmul:
  (qkv,)    qkv (B, T, 3I)                     self-attention
  (q, kv)   q (B, T, I) and kv (B, S, 2I)      cross-attention, or decoding with a cache
``keep`` (broadcastable to (B, H, T, S), True = attend) masks scores with the
dtype's most negative finite value; a query with no key left outputs zeros.
"""
from ... import backend
from ...backend import matmul as mm
from ..function import Function
from . import gpu_kernels
from .nn import row_dot, softmax_rows_


def _heads(x, B, N, H, E):
    """(B, N, H*E) -> (B, H, N, E) view (no copy)."""
    return x.reshape(B, N, H, E).transpose(0, 2, 1, 3)


class ScaledDotProductAttention(Function):
    """Fused multi-head attention on packed projections (see the module docstring)."""

    def forward(self, *xs, heads, scale, keep=None, dropout_mask=None):
        xp = self.xp
        if len(xs) == 1:                                  # packed self-attention
            I = xs[0].shape[-1] // 3
            q, k, v = xs[0][..., :I], xs[0][..., I:2 * I], xs[0][..., 2 * I:]
        else:
            q, kv = xs
            I = q.shape[-1]
            k, v = kv[..., :I], kv[..., I:]
        B, T, S, H, E = q.shape[0], q.shape[1], k.shape[1], heads, I // heads
        qh, kh, vh = _heads(q, B, T, H, E), _heads(k, B, S, H, E), _heads(v, B, S, H, E)
        s = mm(qh, kh.transpose(0, 1, 3, 2))               # (B, H, T, E) @ (B, H, E, S) -> (B, H, T, S)
        s = _softmax_gpu(s, keep, scale) if xp is not backend.np else softmax_rows_(s, keep, scale)
        p = s if dropout_mask is None else s * dropout_mask
        out = xp.empty((B, T, H, E), dtype=xp.result_type(p, vh))   # heads merged through a view
        mm(p, vh, out=_heads(out, B, T, H, E))            # (B, H, T, S) @ (B, H, S, E) -> (B, H, T, E)
        self.qh, self.kh, self.vh, self.probs, self.p = qh, kh, vh, s, p
        self.dropout_mask, self.scale, self.shape = dropout_mask, scale, (B, T, S, H, E)
        return out.reshape(B, T, I)                       # (B, T, H*E), no copy

    def backward(self, g):
        xp = self.xp
        B, T, S, H, E = self.shape
        # The gradients are written straight into their packed layouts through (B, H, N, E) views.
        dq = dk = dv = None
        if len(self.inputs) == 1:
            gqkv = xp.empty((B, T, 3, H, E), dtype=g.dtype)              # (B, T, 3I) once reshaped
            dq, dk, dv = (_heads(gqkv[:, :, i], B, T, H, E) for i in range(3))
            grads = (gqkv.reshape(B, T, 3 * H * E),)
        else:
            gq = gkv = None
            if self.needs_grad[0]:
                gq = xp.empty((B, T, H, E), dtype=g.dtype)               # (B, T, I) once reshaped
                dq = _heads(gq, B, T, H, E)
            if self.needs_grad[1]:
                gkv = xp.empty((B, S, 2, H, E), dtype=g.dtype)           # (B, S, 2I) once reshaped
                dk = _heads(gkv[:, :, 0], B, S, H, E)
                dv = _heads(gkv[:, :, 1], B, S, H, E)
            grads = (None if gq is None else gq.reshape(B, T, H * E),
                     None if gkv is None else gkv.reshape(B, S, 2 * H * E))
        gh = _heads(g, B, T, H, E)                        # (B, H, T, E)
        if dv is not None:
            mm(self.p.transpose(0, 1, 3, 2), gh, out=dv)     # (B, H, S, T) @ (B, H, T, E): dL/dv = p^T g
        dp = mm(gh, self.vh.transpose(0, 1, 3, 2))          # (B, H, T, E) @ (B, H, E, S): dL/dp = g v^T
        if self.dropout_mask is not None:
            dp *= self.dropout_mask
        probs = self.probs                                # softmax rule: ds = y * (dp - sum(dp * y))
        if xp is not backend.np:                          # the rule and the scale: two kernels
            dot = gpu_kernels.sum_of_product()(dp, probs, axis=-1, keepdims=True)
            dp = gpu_kernels.softmax_backward()(dp, probs, dot, self.scale)
        else:
            dp -= row_dot(dp, probs)
            dp *= probs
            dp *= self.scale                              # scores were q k^T * scale
        if dq is not None:
            mm(dp, self.kh, out=dq)                       # (B, H, T, S) @ (B, H, S, E)
        if dk is not None:
            mm(dp.transpose(0, 1, 3, 2), self.qh, out=dk)     # (B, H, S, T) @ (B, H, T, E)
        return grads                                      # the reshapes above are views


def _softmax_gpu(s, keep, scale):
    """The same in three fused kernels: masked row max, row sum of exps, probabilities.

    Shifting by the max of the raw scores is right because scale > 0.
    """
    xp = backend.array_module("gpu")
    if keep is None:
        keep = xp.ones((1,) * s.ndim, dtype=bool)
    m = gpu_kernels.masked_row_max(s.dtype.char)(s, keep, axis=-1, keepdims=True)   # (B, H, T, 1)
    d = gpu_kernels.masked_exp_sum()(s, keep, m, scale, axis=-1, keepdims=True)     # (B, H, T, 1)
    return gpu_kernels.masked_softmax_apply()(s, keep, m, d, scale)                 # (B, H, T, S)


def scaled_dot_product_attention(*xs, heads, scale, keep=None, dropout_mask=None):
    """Multi-head attention on packed projections; see the module docstring.

    Returns (B, T, H*E).  ``dropout_mask`` (B, H, T, S) holds 0 or 1/(1-p) and
    multiplies the probabilities.
    """
    return ScaledDotProductAttention.apply(*xs, heads=heads, scale=scale, keep=keep,
                                           dropout_mask=dropout_mask)
