"""Transformer stacks and the token-sequence wrappers.

  Block                 pre-norm residual block: [LN -> self-attn] [LN -> cross-attn] [LN -> FF]
  AttentionLayers       depth Blocks and a final LayerNorm; ``Encoder`` (bidirectional) and
                        ``Decoder`` (causal, cross-attending) set its defaults
  TransformerWrapper    token embedding + learned positions + layers (+ logits head)
  AutoregressiveWrapper teacher forcing: tgt[:, :-1] in, tgt[:, 1:] as labels -> mean cross-entropy

Defaults follow x-transformers' XTransformer: LayerNorm with a gain and no bias
(eps 1e-5), bias-free q/k/v/out projections, feed-forward with biases and exact
GELU, positions scaled by dim ** -0.5, bias-free logits head.
"""
import math

from .. import backend
from ..autograd import ops
from ..autograd.anomaly import is_anomaly_enabled
from ..errors import DeviceError, DTypeError, InputError, ShapeError
from .attention import Attention, KVCache
from .layers import AbsolutePositionalEmbedding, Dropout, Embedding, FeedForward, LayerNorm, Linear, as_array
from .module import Module, ModuleList
from .packing import packing_for, rows_before_last_label


class Block(Module):
    """One pre-norm layer: x + Attn(LN(x)) [+ CrossAttn(LN(x), context)] + FF(LN(x))."""

    def __init__(self, dim, heads, dim_head, ff_mult, causal, cross_attend,
                 attn_dropout, ff_dropout, resid_dropout):
        super().__init__()
        self.attn_norm = LayerNorm(dim, bias=False)
        self.attn = Attention(dim, heads, dim_head, causal=causal, dropout=attn_dropout)
        self.cross_norm = LayerNorm(dim, bias=False) if cross_attend else None
        self.cross_attn = Attention(dim, heads, dim_head, dropout=attn_dropout) if cross_attend else None
        self.ff_norm = LayerNorm(dim, bias=False)
        self.ff = FeedForward(dim, mult=ff_mult, dropout=ff_dropout)
        self.resid_dropout = Dropout(resid_dropout)

    def forward(self, x, mask=None, context=None, context_mask=None, cache=None, packing=None):
        """x (B, T, D), context (B, S, D) -> (B, T, D); ``cache`` a (self, cross) KVCache pair.

        With ``packing`` (a RowPacking of (B, T)), x holds the kept positions: (N, D) -> (N, D).
        """
        self_cache, cross_cache = cache if cache is not None else (None, None)
        x = x + self.resid_dropout(self.attn(self.attn_norm(x), mask=mask, cache=self_cache, packing=packing))
        if self.cross_attn is not None:
            h = self.cross_attn(self.cross_norm(x), context=context, context_mask=context_mask, cache=cross_cache,
                                packing=packing)
            x = x + self.resid_dropout(h)
        return x + self.resid_dropout(self.ff(self.ff_norm(x)))


class AttentionLayers(Module):
    """``depth`` pre-norm Blocks followed by a final LayerNorm (gain only)."""

    def __init__(self, dim, depth, heads=8, dim_head=64, ff_mult=4, causal=False, cross_attend=False,
                 attn_dropout=0.0, ff_dropout=0.0, resid_dropout=0.0):
        super().__init__()
        self.dim, self.depth, self.causal, self.cross_attend = dim, depth, causal, cross_attend
        self.layers = ModuleList(
            Block(dim, heads, dim_head, ff_mult, causal, cross_attend, attn_dropout, ff_dropout, resid_dropout)
            for _ in range(depth))
        self.final_norm = LayerNorm(dim, bias=False)

    def forward(self, x, mask=None, context=None, context_mask=None, cache=None, packing=None):
        """x (B, T, D) -> (B, T, D); ``cache`` a list with one KVCache pair per layer.

        With ``packing`` (a RowPacking of (B, T)), x holds the kept positions: (N, D) -> (N, D).
        """
        if self.cross_attend and context is None:
            raise InputError("this decoder cross-attends: pass context=(B, S, D) encoder output")
        for i, layer in enumerate(self.layers):
            x = layer(x, mask=mask, context=context, context_mask=context_mask,
                      cache=None if cache is None else cache[i], packing=packing)
        return self.final_norm(x)

    def new_cache(self):
        """Empty key/value caches, one (self, cross) pair per layer."""
        return [(KVCache(), KVCache()) for _ in range(self.depth)]


class Encoder(AttentionLayers):
    """Bidirectional self-attention stack (no causal mask, no cross-attention)."""

    def __init__(self, dim, depth, **kwargs):
        super().__init__(dim, depth, causal=False, cross_attend=False, **kwargs)


class Decoder(AttentionLayers):
    """Causal self-attention, cross-attention to a context, feed-forward, per layer."""

    def __init__(self, dim, depth, cross_attend=True, **kwargs):
        super().__init__(dim, depth, causal=True, cross_attend=cross_attend, **kwargs)


def token_ids(x, name, num_tokens, device):
    """Validate token ids ``x`` (B, T) and return them as an integer array on ``device``.

    Ids in a host array are range-checked (free); ids already on the GPU only
    inside ``detect_anomaly()``, since checking them costs a host sync.
    """
    data = as_array(x, name)
    if data.dtype.kind not in "iu":
        raise DTypeError(f"{name} must hold integer token ids, got dtype {data.dtype}; "
                         "convert with .astype(int) (floats are not token ids)")
    if data.ndim != 2:
        raise ShapeError(f"{name} must have shape (batch, length), got {tuple(data.shape)}")
    if data.shape[1] == 0 and data.shape[0]:
        raise ShapeError(f"{name} has shape {tuple(data.shape)}: every row needs at least one token")
    check_vocabulary(data, name, num_tokens)
    return to_model_device(data, name, device)


def check_vocabulary(data, name, num_tokens, ignore_index=None):
    """Raise InputError when an id in ``data`` (other than ``ignore_index``) is outside [0, num_tokens).

    Host arrays are always checked (no sync); GPU arrays only inside
    ``detect_anomaly()``, since reading the answer back costs a host sync.
    """
    if not data.size:
        return
    ignored = "" if ignore_index is None else f" and not ignore_index ({ignore_index})"
    if backend.is_gpu_array(data):
        if is_anomaly_enabled():
            bad = (data < 0) | (data >= num_tokens)
            if ignore_index is not None:
                bad &= data != ignore_index
            if bool(bad.any()):
                raise InputError(f"{name} holds token ids outside the vocabulary [0, {num_tokens}){ignored}")
        return
    real = data if ignore_index is None else data[data != ignore_index]
    if real.size:
        lo, hi = int(real.min()), int(real.max())
        if lo < 0 or hi >= num_tokens:
            raise InputError(f"{name} holds token id {lo if lo < 0 else hi}, outside the vocabulary "
                             f"[0, {num_tokens}){ignored}")


def to_model_device(data, name, device):
    """``data`` on the model's ``device``: host arrays are copied to the GPU (the usual input
    transfer); a GPU array for a CPU model is an error, never a silent copy back."""
    here = backend.device_of(data)
    if here == device:
        return data
    if here == "gpu":
        raise DeviceError(f"{name} is on the GPU but the model is on the CPU; move the model "
                          f"with model.to('gpu') or pass {name} as a NumPy array")
    return backend.to_device(data, device)


def bool_mask(m, name, shape, device):
    """Validate a boolean mask of ``shape`` and return it as an array on ``device``."""
    if m is None:
        return None
    data = as_array(m, name)
    if data.dtype.kind != "b":
        raise DTypeError(f"{name} must be boolean (True = real token), got dtype {data.dtype}")
    if tuple(data.shape) != tuple(shape):
        raise ShapeError(f"{name} has shape {tuple(data.shape)}, expected {tuple(shape)} (batch, keys)")
    return to_model_device(data, name, device)


class TransformerWrapper(Module):
    """Tokens (B, T) -> logits (B, T, V): token embedding + positions + layers + head.

    ``TransformerWrapper(num_tokens, max_seq_len, attn_layers, emb_dropout=0.0, logits=True)``.
    The token embedding is initialised N(0, 2/dim) as in x-transformers; the
    logits head is a bias-free Linear (absent with ``logits=False``).
    """

    def __init__(self, num_tokens, max_seq_len, attn_layers, emb_dropout=0.0, logits=True):
        super().__init__()
        dim = attn_layers.dim
        self.num_tokens, self.max_seq_len = num_tokens, max_seq_len
        self.token_emb = Embedding(num_tokens, dim, std=math.sqrt(2.0 / dim))
        self.pos_emb = AbsolutePositionalEmbedding(dim, max_seq_len)
        self.emb_dropout = Dropout(emb_dropout)
        self.attn_layers = attn_layers
        self.to_logits = Linear(dim, num_tokens, bias=False) if logits else None

    def forward(self, x, mask=None, context=None, context_mask=None, cache=None, return_embeddings=False,
                packing=None):
        """x (B, T) ints -> logits (B, T, V), or embeddings (B, T, D) with ``return_embeddings``.

        With a ``cache`` (from ``attn_layers.new_cache()``), ``x`` holds only the
        new positions, which continue after the cached ones.  With ``packing``
        (a RowPacking of (B, T), see ``packing.py``) only its N kept positions
        are computed: logits (N, V) or embeddings (N, D), batch-major.
        """
        dev = self.token_emb.weight.device
        ids = token_ids(x, "tokens", self.num_tokens, dev)
        B, T = ids.shape
        offset = 0 if cache is None else cache[0][0].length
        mask = bool_mask(mask, "mask", (B, offset + T), dev)             # with a cache: every key so far
        h = self.token_emb(ids) + self.pos_emb(T, offset)                    # (B, T, D)
        if packing is not None:
            if (packing.batch, packing.length) != (B, T):
                raise ShapeError(f"packing is for a ({packing.batch}, {packing.length}) batch but the "
                                 f"tokens have shape {(B, T)}")
            if backend.device_of(packing.index) != dev:
                raise DeviceError(f"packing was built on {backend.device_of(packing.index)} but the model "
                                  f"is on {dev}; build the RowPacking from a mask on {dev}")
            h = packing.pack(h)                                              # (N, D)
        h = self.attn_layers(self.emb_dropout(h), mask=mask, context=context,
                             context_mask=context_mask, cache=cache, packing=packing)
        if return_embeddings or self.to_logits is None:
            return h
        return self.to_logits(h)                                             # (B, T, V) or (N, V)


class AutoregressiveWrapper(Module):
    """Teacher forcing: ``loss = wrapper(tgt, context=..., context_mask=...)``.

    Feeds ``tgt[:, :-1]`` (with ``ignore_index`` replaced by ``pad_value``) and
    scores the predictions against ``tgt[:, 1:]``; the mean cross-entropy skips
    labels equal to ``ignore_index``.  With ``skip_padding`` (on the CPU), the
    positions after each row's last scored label are not computed at all
    (``packing.py``): same loss and gradients, less work (dropout outside
    attention then draws its masks for fewer positions).
    """

    def __init__(self, net, ignore_index=-100, pad_value=0, label_smoothing=0.0, skip_padding=True):
        super().__init__()
        self.net = net
        self.ignore_index, self.pad_value, self.label_smoothing = ignore_index, pad_value, label_smoothing
        self.skip_padding = skip_padding

    def forward(self, tgt, context=None, context_mask=None):
        """tgt (B, T+1) ints -> scalar loss."""
        data = as_array(tgt, "tgt")
        if data.ndim != 2 or data.shape[1] < 2:
            raise ShapeError(f"tgt must have shape (batch, length >= 2), got {tuple(data.shape)}")
        if data.dtype.kind not in "iu":
            raise DTypeError(f"tgt must hold integer token ids, got dtype {data.dtype}")
        check_vocabulary(data, "tgt", self.net.num_tokens, self.ignore_index)
        xp = backend.get_array_module(data)
        inp, labels = data[:, :-1], data[:, 1:]
        inp = xp.where(inp == self.ignore_index, self.pad_value, inp)
        if inp.shape[1] > self.net.max_seq_len:
            raise ShapeError(f"tgt has length {data.shape[1]}: the decoder reads {inp.shape[1]} positions "
                             f"but its max_seq_len is {self.net.max_seq_len}")
        dev = self.net.token_emb.weight.device
        labels = to_model_device(labels, "tgt", dev)
        packing = None
        if self.skip_padding and dev == "cpu":                                  # see packing.py
            packing = packing_for(rows_before_last_label(labels, self.ignore_index))
        logits = self.net(inp, context=context, context_mask=context_mask, packing=packing)  # (B, T, V) | (N, V)
        if packing is not None:
            labels = labels.reshape(-1)[packing.index]                           # (N,)
        return ops.cross_entropy(logits, labels, ignore_index=self.ignore_index,
                                 label_smoothing=self.label_smoothing)
