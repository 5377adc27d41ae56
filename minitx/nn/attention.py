"""Multi-head attention, one class for self- and cross-attention, with masks
and an optional key/value cache for incremental decoding.

Shapes: B batch, T queries, S keys, H heads, E head dim, D model dim.
Masks use True = attend.  Masked scores are set to the dtype's most negative
finite value (never -inf), and a query whose keys are all masked outputs zeros
with zero gradient.  The arithmetic is one fused op,
``minitx.autograd.ops.attention.ScaledDotProductAttention``; this module projects,
builds the masks and keeps the cache.  With a ``RowPacking`` (``packing.py``) the
input holds only the real positions (N, D); the projections run on those rows and
are spread back to (B, T) for the fused op.
"""
from .. import backend
from ..autograd import ops
from ..autograd.ops.nn import dropout_mask
from ..autograd.tensor import Tensor
from ..errors import DTypeError, InputError, ShapeError, check_probability
from .layers import Linear, check_input
from .module import Module


class KVCache:
    """Keys and values of one attention layer kept between decoding steps.

    ``kv`` (B, S, 2 * heads * dim_head) holds the projected keys and values
    side by side.  Self-attention appends each step's; cross-attention computes
    them from the encoder output once and reuses them.
    """

    def __init__(self):
        self.kv = None

    @property
    def length(self):
        """Number of cached positions."""
        return 0 if self.kv is None else self.kv.shape[1]


def causal_mask(xp, T, S):
    """(T, S) boolean mask, True where query i may see key j: j <= i + (S - T).

    Aligned bottom-right, so the last query sees every key: correct when the
    queries are the newest T of S positions (decoding with a KV cache).
    """
    return xp.arange(S)[None, :] <= xp.arange(T)[:, None] + (S - T)


def _check_mask(name, mask, shape, device="cpu"):
    if mask is None:
        return None
    data = mask.data if isinstance(mask, Tensor) else mask
    if hasattr(data, "dtype") and backend.device_of(data) != device:
        data = backend.to_device(data, device)        # masks are small: an explicit copy
    if getattr(data, "dtype", None) is None or data.dtype.kind != "b":
        raise DTypeError(f"{name} must be a boolean array (True = attend), got {getattr(data, 'dtype', type(data).__name__)}")
    if tuple(data.shape) != tuple(shape):
        raise ShapeError(f"{name} has shape {tuple(data.shape)}, expected {tuple(shape)}")
    return data


class Attention(Module):
    """Multi-head scaled dot-product attention.

    ``Attention(dim, heads=8, dim_head=64, causal=False, dropout=0.0, dim_context=None, bias=False)``:
    q from ``x`` (B, T, D); k and v from ``context`` (B, S, Dc) for cross-attention
    or from ``x`` itself; inner width heads * dim_head may differ from ``dim``.
    Scores are scaled by 1/sqrt(dim_head); ``dropout`` applies to the attention
    probabilities.
    """

    def __init__(self, dim, heads=8, dim_head=64, causal=False, dropout=0.0, dim_context=None, bias=False):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.causal = heads, dim_head, causal
        self.scale = dim_head ** -0.5
        self.to_q = Linear(dim, inner, bias=bias)
        self.to_k = Linear(dim_context or dim, inner, bias=bias)
        self.to_v = Linear(dim_context or dim, inner, bias=bias)
        self.to_out = Linear(inner, dim, bias=bias)
        self.dropout = check_probability("Attention", "dropout", dropout)   # on the probabilities

    def _project(self, x, layers):
        """One matmul for several projections of ``x``: (B, N, D) -> (B, N, len(layers) * I)."""
        if len(layers) == 1:
            return layers[0](x)
        w = ops.concat([m.weight for m in layers], axis=0)                     # (k I, D)
        b = None if layers[0].bias is None else ops.concat([m.bias for m in layers], axis=0)
        return ops.linear(x, w, b)

    def forward(self, x, context=None, mask=None, context_mask=None, attn_mask=None, cache=None, packing=None):
        """x (B, T, D) -> (B, T, D); with ``packing``, x (N, D) -> (N, D).

        mask          (B, S) padding mask of the keys for self-attention (S = T
                      without a cache; cached + new positions with one)
        context_mask  (B, S) padding mask of ``context`` for cross-attention
        attn_mask     (B, T, S) full boolean mask, combined with the others
        cache         a KVCache to read and extend (incremental decoding)
        packing       a ``RowPacking`` of (B, T): x holds only its N kept
                      positions, which are also the only keys of self-attention
        """
        if packing is None:
            self._check_3d("x", x, self.to_q)
            B, T, _ = x.shape
        else:
            self._check_packed(x, packing, cache)
            B, T = packing.batch, packing.length
        is_cross = context is not None
        if is_cross:
            self._check_3d("context", context, self.to_k)
            if context.shape[0] != B:
                raise ShapeError(f"context has batch size {context.shape[0]} but x has {B}")
        unpack = (lambda h: h) if packing is None else packing.unpack          # (N, F) -> (B, T, F)
        if not is_cross and cache is None:
            inputs = (unpack(self._project(x, (self.to_q, self.to_k, self.to_v))),)   # (B, T, 3I)
            S = T
        else:
            q = unpack(self.to_q(x))                                            # (B, T, I)
            if is_cross and cache is not None and cache.kv is not None:
                kv = cache.kv                                                   # computed once
            else:
                kv = self._project(context if is_cross else x, (self.to_k, self.to_v))  # (B, S_new, 2I)
                if cache is not None:
                    if not is_cross and cache.kv is not None:
                        kv = ops.concat([cache.kv, kv], axis=1)                 # (B, S, 2I)
                    cache.kv = kv
            inputs = (q, kv)
            S = kv.shape[1]
        keep = self._keep_mask(x.xp, x.device, B, T, S, is_cross, mask, context_mask, attn_mask,
                               None if packing is None else packing.keep)
        drop = None
        if self.training and self.dropout > 0:
            drop = dropout_mask((B, self.heads, T, S), self.dropout, x.device, x.dtype)   # on the probabilities
        out = ops.scaled_dot_product_attention(*inputs, heads=self.heads, scale=self.scale,
                                               keep=keep, dropout_mask=drop)    # (B, T, H*E)
        if packing is not None:
            out = packing.pack(out)                                             # (N, H*E)
        return self.to_out(out)

    def _check_3d(self, name, t, proj):
        """``t`` must be a (batch, length, features) float Tensor fitting ``proj``, on its device."""
        if isinstance(t, Tensor) and t.ndim == 3 and t.shape[0] > 0:
            check_input(self, t, proj.in_features, proj.weight)
            return
        shape = t.shape if isinstance(t, Tensor) else getattr(t, "shape", type(t).__name__)
        raise ShapeError(f"Attention({self.extra_repr()}): {name} must be a Tensor of shape (batch, "
                         f"length, {proj.in_features}) with batch >= 1, got {shape}")

    def _check_packed(self, x, packing, cache):
        """With ``packing``, x must be (N, D) rows: N = packing.rows; no cache."""
        if cache is not None:
            raise InputError("Attention: packing (skipped padding) and a KV cache cannot be combined; "
                             "decode with packing=None")
        if not (isinstance(x, Tensor) and x.ndim == 2 and x.shape[0] == packing.rows):
            shape = x.shape if isinstance(x, Tensor) else type(x).__name__
            raise ShapeError(f"Attention({self.extra_repr()}): with packing, x must be a Tensor of shape "
                             f"({packing.rows}, {self.to_q.in_features}) (the kept positions), got {shape}")
        check_input(self, x, self.to_q.in_features, self.to_q.weight)

    def _keep_mask(self, xp, dev, B, T, S, is_cross, mask, context_mask, attn_mask, packed=None):
        """Combine padding, causal and full masks into one (B|1, 1, T|1, S) boolean array or None.

        ``packed`` (B, T): the positions a RowPacking keeps; for self-attention
        the others are padding keys too.
        """
        keep = None
        pad = context_mask if is_cross else mask
        pad = _check_mask("context_mask" if is_cross else "mask", pad, (B, S), dev)
        if packed is not None and not is_cross and pad is not packed:
            pad = packed if pad is None else pad & packed
        if pad is not None:
            keep = pad[:, None, None, :]                                        # (B, 1, 1, S)
        if self.causal:
            c = causal_mask(xp, T, S)[None, None]                               # (1, 1, T, S)
            keep = c if keep is None else keep & c
        full = _check_mask("attn_mask", attn_mask, (B, T, S), dev)
        if full is not None:
            keep = full[:, None] if keep is None else keep & full[:, None]       # (B, 1, T, S)
        return keep

    def extra_repr(self):
        return f"heads={self.heads}, dim_head={self.dim_head}, causal={self.causal}, dropout={self.dropout}"
