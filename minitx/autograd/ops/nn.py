"""Neural-network ops, each fused into one node with its forward and backward
side by side: softmax, log_softmax, masked softmax (attention), embedding
lookup, dropout and cross-entropy (layer norm: ``norm.py``).

Fusing keeps the graph small (one node instead of five to ten) and lets the
backward use closed forms (``softmax' = y * (g - sum(g * y))``) instead of
chaining many small gradients.
"""
import math

from ... import backend
from ...errors import DTypeError, InputError, ShapeError, check_probability
from ..function import Function
from ..tensor import Tensor
from . import gpu_kernels


def _min_value(dtype, xp):
    """The most negative finite value of ``dtype`` (used instead of -inf for masking)."""
    return xp.finfo(dtype).min


class Softmax(Function):
    """Softmax along an axis, shifted by the max for stability."""
    saves_output = True
    saves_inputs = False

    def forward(self, x, axis):
        xp = self.xp
        self.axis = axis
        e = xp.exp(x - x.max(axis=axis, keepdims=True))   # shift by the max: no overflow
        self.y = e / e.sum(axis=axis, keepdims=True)
        return self.y

    def backward(self, g):
        y = self.y                                       # dx = y * (g - <g, y>)
        return (y * (g - (g * y).sum(axis=self.axis, keepdims=True)),)

    def backward_graph(self, g):
        y = softmax(self.inputs[0], self.axis)           # recomputed as an op: differentiable
        return (y * (g - (g * y).sum(axis=self.axis, keepdims=True)),)


class LogSoftmax(Function):
    """log(softmax(x)) along an axis, computed stably."""
    saves_output = True
    saves_inputs = False

    def forward(self, x, axis):
        xp = self.xp
        self.axis = axis
        shifted = x - x.max(axis=axis, keepdims=True)
        self.y = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        return self.y

    def backward(self, g):
        p = self.xp.exp(self.y)                          # dx = g - softmax * sum(g)
        return (g - p * g.sum(axis=self.axis, keepdims=True),)

    def backward_graph(self, g):
        p = softmax(self.inputs[0], self.axis)
        return (g - p * g.sum(axis=self.axis, keepdims=True),)


class MaskedSoftmax(Function):
    """Softmax over the last axis of ``x`` where ``mask`` (True = keep) allows.

    Masked entries get probability 0.  A row whose entries are all masked
    outputs zeros (not NaN, not uniform), and so passes back zero gradient.
    """
    saves_output = True
    saves_inputs = False

    def forward(self, x, mask):
        self.y = softmax_rows_(x.copy(), keep=mask)
        return self.y

    def backward(self, g):
        y = self.y                                       # softmax rule; y = 0 where masked
        return (y * (g - row_dot(g, y)),)


def softmax_rows_(s, keep=None, scale=None):
    """softmax(s * scale) over the last axis of ``s``, in place, where ``keep`` allows.

    ``keep``: a boolean array broadcastable to ``s`` (True = keep) or None.
    Masked entries get probability 0 (their scores become the dtype's most
    negative finite value first, so no inf - inf = NaN); a row with nothing
    kept becomes all zeros.  Shared by ``MaskedSoftmax`` and attention's CPU path.
    """
    xp = backend.get_array_module(s)
    lowest = _min_value(s.dtype, xp)
    if scale is not None:
        s *= scale
    if keep is not None:
        xp.copyto(s, lowest, where=~keep)
    m = row_max(s)                                       # (..., 1)
    s -= m
    xp.exp(s, out=s)                                     # masked entries: exp(lowest - m) = 0 ...
    if keep is not None and (xp is not backend.np or (m == lowest).any()):
        xp.copyto(s, 0, where=~keep)                     # ... unless m = lowest: then exp(0) = 1
    total = row_sum(s)                                   # >= 1 where something is kept
    if keep is not None:                                 # nothing kept: 1 / inf = 0
        total = xp.where(total > 0, total, xp.inf)
    s *= xp.reciprocal(total, out=total)
    return s


# Row reductions over the last axis of a C-contiguous array, shaped (..., 1).  NumPy reduces
# many short rows slowly (a loop per row), so on the CPU these take a faster route.

def _rows(s):
    """(..., S) -> (R, S) with R the product of the leading axes (a view when contiguous)."""
    return s.reshape(math.prod(s.shape[:-1]), s.shape[-1])


def row_sum(s):
    """Sum over the last axis, (..., 1): one matrix-vector product with ones (BLAS) on the CPU."""
    xp = backend.get_array_module(s)
    if xp is not backend.np:
        return s.sum(axis=-1, keepdims=True)
    ones = xp.ones(s.shape[-1], dtype=s.dtype)
    return (_rows(s) @ ones).reshape(s.shape[:-1] + (1,))     # (R, S) @ (S,) -> (R,)


def row_max(s):
    """Max over the last axis, (..., 1); NaN propagates.

    On the CPU a row of at most 64 is reduced column by column: each
    ``maximum`` spans every row at once.
    """
    xp = backend.get_array_module(s)
    S = s.shape[-1]
    if xp is not backend.np or S > 64 or S == 0 or s.size == 0:
        return s.max(axis=-1, keepdims=True)
    cols = _rows(s)                                      # (R, S)
    m = cols[:, 0].copy()
    for j in range(1, S):
        xp.maximum(m, cols[:, j], out=m)
    return m.reshape(s.shape[:-1] + (1,))


def row_dot(a, b):
    """Sum over the last axis of ``a * b``, (..., 1), without the product array on the CPU.

    einsum adds each row in order (no pairwise summation): fine for the short
    rows of a softmax backward, less accurate than ``sum`` for very long float32 rows.
    """
    xp = backend.get_array_module(a)
    if xp is not backend.np:
        return (a * b).sum(axis=-1, keepdims=True)
    dot = xp.einsum("rs,rs->r", _rows(a), _rows(b))      # (R,)
    return dot.reshape(a.shape[:-1] + (1,))


class EmbeddingLookup(Function):
    """Rows of ``weight`` (V, D) picked by integer ``indices`` (any shape)."""
    saves_inputs = False

    def forward(self, weight, indices):
        self.indices, self.vocab = indices, weight.shape[0]
        return weight[indices]                           # (..., D)

    def backward(self, g):
        D = g.shape[-1]
        grad = self.xp.zeros((self.vocab, D), dtype=g.dtype)
        backend.add_rows(grad, self.indices.reshape(-1), g.reshape(-1, D))  # repeats add up
        return (grad,)

    def backward_graph(self, g):
        from .shape import ScatterAdd
        return (ScatterAdd.apply(g, shape=(self.vocab, g.shape[-1]), index=self.indices),)


class Dropout(Function):
    """``x * mask`` where ``mask`` holds 0 or 1/(1-p) (drawn by ``dropout``)."""
    saves_inputs = False

    def forward(self, x, mask):
        self.mask = mask
        return x * mask

    def backward(self, g):
        return (g * self.mask,)

    backward_graph = backward


class CrossEntropy(Function):
    """Softmax cross-entropy of logits (N, V) against integer targets (N,), fused.

    Per row: ``(1 - s) * -log p[t] + s * mean_v(-log p[v])`` with s the label
    smoothing; rows whose target is ``ignore_index`` count zero.
    """

    def forward(self, logits, target, ignore_index, label_smoothing, reduction):
        xp = self.xp
        N, V = logits.shape
        valid = target != ignore_index                                 # (N,)
        self.valid, self.smooth, self.reduction = valid, label_smoothing, reduction
        if xp is not backend.np:
            loss = self._rows_gpu(logits, target, ignore_index, label_smoothing)
            return self._reduce(loss, valid, reduction, logits.dtype)
        safe = xp.where(valid, target, 0)
        shifted = logits - row_max(logits)                              # (N, V)
        picked = shifted[xp.arange(N), safe]                            # (N,)
        mean_shifted = shifted.mean(axis=-1) if label_smoothing else None
        e = xp.exp(shifted, out=shifted)
        sum_e = row_sum(e)                                              # (N, 1)
        log_sum = xp.log(sum_e[:, 0])
        loss = log_sum - picked                                         # -log p[target]  (N,)
        if label_smoothing:
            mean_logp = mean_shifted - log_sum                          # mean_v log p[v]
            loss = (1 - label_smoothing) * loss - label_smoothing * mean_logp
        loss = xp.where(valid, loss, 0)                                 # ignored rows: 0, even for NaN logits
        e /= sum_e                                                      # softmax (N, V), in place
        if not valid.all():
            xp.copyto(e, 0, where=~valid[:, None])                      # 0 on ignored rows (NaN logits too)
        self.p = e
        self.target, self.safe = target, safe
        return self._reduce(loss, valid, reduction, logits.dtype)

    def _reduce(self, loss, valid, reduction, dtype):
        """Per-row losses (N,) -> the requested reduction."""
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        self.count = self.xp.maximum(valid.sum(), 1).astype(dtype)     # no division by zero
        return loss.sum() / self.count

    def _rows_gpu(self, logits, target, ignore_index, smooth):
        """Fused kernels: per-row log-sum-exp, then per-row losses (N,); keeps lse, not p."""
        xp = self.xp
        logits = xp.ascontiguousarray(logits)                          # the row kernel indexes it flat
        target = target.astype(xp.int64, copy=False)
        m = logits.max(axis=1, keepdims=True)                          # (N, 1)
        lse = m[:, 0] + xp.log(gpu_kernels.sum_exp_shifted()(logits, m, axis=1))   # (N,)
        mean_x = logits.mean(axis=1) if smooth else lse                # lse: the smoothing term is 0
        self.logits, self.target, self.lse = logits, target, lse
        return gpu_kernels.cross_entropy_rows()(logits, target, lse, mean_x, logits.shape[1],
                                                ignore_index, smooth, float("nan"))

    def backward(self, g):
        xp = self.xp
        if self.reduction == "mean":
            g = g / self.count
        scale = (g * self.valid)[:, None]                              # (N, 1) or (1, 1)
        if xp is not backend.np:                                       # one kernel over (N, V)
            logits = self.logits
            return (gpu_kernels.cross_entropy_grad()(logits, self.lse[:, None], self.target[:, None],
                                                     scale, logits.shape[1], self.smooth),)
        N, V = self.p.shape
        scale = xp.broadcast_to(scale, (N, 1))
        grad = self.p * scale                                          # d/dlogits = p - target dist
        grad[xp.arange(N), self.safe] -= (1 - self.smooth) * scale[:, 0]
        if self.smooth:
            grad -= (self.smooth / V) * scale
        return (grad,)

    def backward_graph(self, g):
        from .shape import reshape
        logits = self.inputs[0]
        N, V = logits.shape
        xp = self.xp
        if self.reduction == "mean":
            g = g / self.count
        scale = reshape(g, (-1, 1)) * self.valid[:, None].astype(logits.dtype)   # (N, 1) or (1, 1)
        target = xp.full((N, V), self.smooth / V, dtype=logits.dtype)           # smoothed one-hot
        target[xp.arange(N), xp.where(self.valid, self.target, 0)] += 1 - self.smooth
        return ((softmax(logits, -1) - target) * scale,)                        # (p - target) * scale


# ------------------------------------------------------------------ wrappers
def softmax(x, axis=-1):
    """Softmax along ``axis``, stable for large inputs."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x, axis=-1):
    """``log(softmax(x))`` along ``axis``, computed stably."""
    return LogSoftmax.apply(x, axis=axis)


def masked_softmax(x, mask):
    """Softmax over the last axis keeping only entries where ``mask`` is True.

    ``mask`` is a boolean array broadcastable to ``x``.  Fully masked rows give
    zeros.
    """
    from .elementwise import _check_bool
    mask = mask.data if isinstance(mask, Tensor) else mask
    _check_bool("masked_softmax", "mask", mask, x)
    return MaskedSoftmax.apply(x, mask=mask)


def embedding(indices, weight):
    """Rows of ``weight`` (V, D) for integer ``indices`` (any shape) -> (..., D)."""
    idx = indices.data if isinstance(indices, Tensor) else indices
    idx = weight.xp.asarray(idx)
    if idx.dtype.kind not in "iu":
        raise DTypeError(f"embedding: indices must be integers, got dtype {idx.dtype}")
    if weight.xp is backend.np and idx.size and (idx.min() < 0 or idx.max() >= weight.shape[0]):
        raise ShapeError(
            f"embedding: index out of range: indices span [{int(idx.min())}, "
            f"{int(idx.max())}] but the table has {weight.shape[0]} rows"
        )
    return EmbeddingLookup.apply(weight, indices=idx)


def dropout(x, p=0.5, training=True):
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p).

    The identity (the same tensor) when ``training`` is False or ``p == 0``.
    """
    check_probability("dropout", "p", p)
    if not training or p == 0.0:
        return x
    return Dropout.apply(x, mask=dropout_mask(x.shape, p, x.device, x.dtype))


def dropout_mask(shape, p, device, dtype):
    """An array of ``shape`` holding 0 (probability ``p``) or 1/(1-p), drawn from ``device``'s generator."""
    xp = backend.array_module(device)
    keep = backend.rng(device).random(shape, dtype=xp.float32) >= p
    return keep.astype(dtype) * xp.dtype(dtype).type(1.0 / (1.0 - p))


def cross_entropy(logits, target, ignore_index=-100, label_smoothing=0.0, reduction="mean"):
    """Softmax cross-entropy between ``logits`` (..., V) and integer ``target`` (...).

    ``reduction='mean'`` averages over non-ignored targets (0 when all are
    ignored), ``'sum'`` adds them, ``'none'`` returns the per-token losses (...).
    """
    if reduction not in ("mean", "sum", "none"):
        raise InputError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    if not 0.0 <= label_smoothing <= 1.0:
        raise InputError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if logits.ndim == 0:
        raise ShapeError("cross_entropy: logits must have shape (..., num_classes), got a 0-d tensor")
    t = target.data if isinstance(target, Tensor) else logits.xp.asarray(target)
    if t.dtype.kind not in "iu":
        raise DTypeError(f"cross_entropy: target must hold integer class ids, got dtype {t.dtype}")
    if logits.shape[:-1] != t.shape:
        raise ShapeError(f"cross_entropy: logits {logits.shape} need target of shape {logits.shape[:-1]}, got {t.shape}")
    V = logits.shape[-1]
    if logits.xp is backend.np:
        bad = (t != ignore_index) & ((t < 0) | (t >= V))
        if bad.any():
            raise ShapeError(
                f"cross_entropy: target value {int(t[bad].flat[0])} is outside [0, {V}) "
                f"and is not ignore_index ({ignore_index})"
            )
    from .shape import reshape
    flat = reshape(logits, (-1, V))                                     # (N, V)
    out = CrossEntropy.apply(flat, target=t.reshape(-1), ignore_index=ignore_index,
                             label_smoothing=label_smoothing, reduction=reduction)
    return reshape(out, t.shape) if reduction == "none" else out
