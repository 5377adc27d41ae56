"""Multi-head attention, one class for self- and cross-attention, with masks
and an optional key/value cache for incremental decoding.

Shapes: B batch, T queries, S keys, H heads, E head dim, D model dim.
Masks use True = attend.  Masked scores are set to the dtype's most negative
finite value (never -inf), and a query whose keys are all masked outputs zeros
with zero gradient (``masked_softmax``).
"""
from ..autograd import ops
from ..autograd.tensor import Tensor
from ..errors import DTypeError, ShapeError
from .layers import Dropout, Linear
from .module import Module


class KVCache:
    """Keys and values of one attention layer kept between decoding steps.

    Self-attention appends the new step's keys/values; cross-attention computes
    them from the encoder output once and reuses them.
    """

    def __init__(self):
        self.k = None   # (B, H, S, E)
        self.v = None

    @property
    def length(self):
        """Number of cached positions."""
        return 0 if self.k is None else self.k.shape[2]


def causal_mask(xp, T, S):
    """(T, S) boolean mask, True where query i may see key j: j <= i + (S - T).

    Aligned bottom-right, so the last query sees every key: correct when the
    queries are the newest T of S positions (decoding with a KV cache).
    """
    return xp.arange(S)[None, :] <= xp.arange(T)[:, None] + (S - T)


def _check_mask(name, mask, shape):
    if mask is None:
        return None
    data = mask.data if isinstance(mask, Tensor) else mask
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
        self.attn_dropout = Dropout(dropout)

    def _split_heads(self, t):
        B, N, _ = t.shape
        return t.reshape(B, N, self.heads, self.dim_head).permute(0, 2, 1, 3)   # (B, H, N, E)

    def forward(self, x, context=None, mask=None, context_mask=None, attn_mask=None, cache=None):
        """x (B, T, D) -> (B, T, D).

        mask          (B, S) padding mask of the keys for self-attention (S = T
                      without a cache; cached + new positions with one)
        context_mask  (B, S) padding mask of ``context`` for cross-attention
        attn_mask     (B, T, S) full boolean mask, combined with the others
        cache         a KVCache to read and extend (incremental decoding)
        """
        B, T, _ = x.shape
        is_cross = context is not None
        q = self._split_heads(self.to_q(x) * self.scale)                        # (B, H, T, E)
        if is_cross and cache is not None and cache.k is not None:
            k, v = cache.k, cache.v                                             # computed once
        else:
            kv_in = context if is_cross else x
            k = self._split_heads(self.to_k(kv_in))                             # (B, H, S_new, E)
            v = self._split_heads(self.to_v(kv_in))
            if cache is not None:
                if not is_cross and cache.k is not None:
                    k = ops.concat([cache.k, k], axis=2)                        # (B, H, S, E)
                    v = ops.concat([cache.v, v], axis=2)
                cache.k, cache.v = k, v
        S = k.shape[2]
        keep = self._keep_mask(x.xp, B, T, S, is_cross, mask, context_mask, attn_mask)
        scores = q @ k.transpose(-1, -2)                                        # (B, H, T, E) @ (B, H, E, S)
        probs = ops.softmax(scores, -1) if keep is None else ops.masked_softmax(scores, keep)
        probs = self.attn_dropout(probs)
        out = probs @ v                                                         # (B, H, T, S) @ (B, H, S, E)
        out = out.permute(0, 2, 1, 3).reshape(B, T, self.heads * self.dim_head)  # (B, T, H*E)
        return self.to_out(out)

    def _keep_mask(self, xp, B, T, S, is_cross, mask, context_mask, attn_mask):
        """Combine padding, causal and full masks into one (B|1, 1, T|1, S) boolean array or None."""
        keep = None
        pad = context_mask if is_cross else mask
        pad = _check_mask("context_mask" if is_cross else "mask", pad, (B, S))
        if pad is not None:
            keep = pad[:, None, None, :]                                        # (B, 1, 1, S)
        if self.causal:
            c = causal_mask(xp, T, S)[None, None]                               # (1, 1, T, S)
            keep = c if keep is None else keep & c
        full = _check_mask("attn_mask", attn_mask, (B, T, S))
        if full is not None:
            keep = full[:, None] if keep is None else keep & full[:, None]       # (B, 1, T, S)
        return keep

    def extra_repr(self):
        return f"heads={self.heads}, dim_head={self.dim_head}, causal={self.causal}"
