"""The encoder-decoder model, ``EncoderDecoder`` (alias ``XTransformer``), and generation.

    loss = model(src, tgt, mask=src_mask)    # teacher-forced mean cross-entropy
    loss.backward()
    out = model.generate(src, start_tokens, seq_len, mask=src_mask, temperature=0.0)

Every option is an explicit keyword argument: ``enc_*`` configure the encoder,
``dec_*`` the decoder; a misspelt option raises TypeError instead of being
silently ignored.
"""
import math
import numbers

import numpy as np

from .. import backend
from ..autograd.function import no_grad
from ..errors import InputError, ShapeError, check_probability
from .transformer import (AutoregressiveWrapper, Decoder, Encoder, TransformerWrapper, as_array, bool_mask,
                          token_ids)
from .module import Module
from .packing import packing_for


class EncoderDecoder(Module):
    """An x-transformers-style encoder-decoder transformer.

    ``dim`` is the model width of both halves.  Per half (prefix ``enc_`` or
    ``dec_``): ``num_tokens``, ``max_seq_len`` (required), ``depth`` (6),
    ``heads`` (8), ``dim_head`` (64), ``ff_mult`` (4), ``attn_dropout``,
    ``ff_dropout``, ``resid_dropout``, ``emb_dropout`` (all 0).
    ``tie_token_emb`` shares the encoder's token embedding with the decoder;
    ``ignore_index`` marks target positions left out of the loss (and replaced
    by ``pad_value`` in the decoder input); ``cross_attn_tokens_dropout`` drops
    that fraction of encoder tokens from cross-attention during training.
    ``skip_padding`` (default True) computes nothing for padded positions on
    the CPU: source positions where ``mask`` is False and target positions
    after each row's last scored label (``minitx/nn/packing.py``); the loss
    and gradients are the same, the work is less (with dropout on embeddings,
    residuals or feed-forwards the masks are drawn for fewer positions: the
    same distribution, other draws).
    """

    def __init__(self, *, dim, enc_num_tokens, enc_max_seq_len, dec_num_tokens, dec_max_seq_len,
                 enc_depth=6, enc_heads=8, enc_dim_head=64, enc_ff_mult=4, enc_attn_dropout=0.0,
                 enc_ff_dropout=0.0, enc_resid_dropout=0.0, enc_emb_dropout=0.0,
                 dec_depth=6, dec_heads=8, dec_dim_head=64, dec_ff_mult=4, dec_attn_dropout=0.0,
                 dec_ff_dropout=0.0, dec_resid_dropout=0.0, dec_emb_dropout=0.0,
                 tie_token_emb=False, ignore_index=-100, pad_value=0, label_smoothing=0.0,
                 cross_attn_tokens_dropout=0.0, skip_padding=True):
        super().__init__()
        check_probability("XTransformer", "cross_attn_tokens_dropout", cross_attn_tokens_dropout)
        self.encoder = TransformerWrapper(
            enc_num_tokens, enc_max_seq_len,
            Encoder(dim, enc_depth, heads=enc_heads, dim_head=enc_dim_head, ff_mult=enc_ff_mult,
                    attn_dropout=enc_attn_dropout, ff_dropout=enc_ff_dropout, resid_dropout=enc_resid_dropout),
            emb_dropout=enc_emb_dropout, logits=False)
        decoder = TransformerWrapper(
            dec_num_tokens, dec_max_seq_len,
            Decoder(dim, dec_depth, heads=dec_heads, dim_head=dec_dim_head, ff_mult=dec_ff_mult,
                    attn_dropout=dec_attn_dropout, ff_dropout=dec_ff_dropout, resid_dropout=dec_resid_dropout),
            emb_dropout=dec_emb_dropout)
        if tie_token_emb:
            if enc_num_tokens != dec_num_tokens:
                raise InputError(f"tie_token_emb needs enc_num_tokens == dec_num_tokens, got "
                                 f"{enc_num_tokens} and {dec_num_tokens}")
            decoder.token_emb = self.encoder.token_emb
        self.decoder = AutoregressiveWrapper(decoder, ignore_index=ignore_index, pad_value=pad_value,
                                             label_smoothing=label_smoothing, skip_padding=skip_padding)
        self.cross_attn_tokens_dropout = cross_attn_tokens_dropout

    @property
    def skip_padding(self):
        """Whether padded positions are skipped on the CPU, in the encoder and the decoder (settable)."""
        return self.decoder.skip_padding

    @skip_padding.setter
    def skip_padding(self, value):
        self.decoder.skip_padding = bool(value)

    def encode(self, src, mask=None):
        """src (B, S) ints -> encoder output (B, S, D).

        Positions where ``mask`` is False hold nothing meaningful: with
        ``skip_padding`` (on the CPU) they are not computed and hold zeros.
        """
        src = token_ids(src, "src", self.encoder.num_tokens, self.device)
        return self._encode(src, bool_mask(mask, "mask", src.shape, self.device))

    def _encode(self, src, mask):
        """``encode`` for ids and mask already checked and on the model's device."""
        packing = packing_for(mask) if self.skip_padding else None          # None on the GPU
        h = self.encoder(src, mask=mask, return_embeddings=True, packing=packing)   # (B, S, D) | (N, D)
        return h if packing is None else packing.unpack(h)

    def forward(self, src, tgt, mask=None):
        """Teacher-forced loss: src (B, S), tgt (B, T+1), mask (B, S) bool (True = real token)."""
        dev = self.device
        src = token_ids(src, "src", self.encoder.num_tokens, dev)
        mask = bool_mask(mask, "mask", src.shape, dev)
        tgt = as_array(tgt, "tgt")
        if tgt.ndim == 2 and len(tgt) != len(src):
            raise ShapeError(f"src has batch size {len(src)} but tgt has {len(tgt)}")
        enc = self._encode(src, mask)
        if self.training and self.cross_attn_tokens_dropout > 0:
            enc, mask = drop_context_tokens(enc, mask, self.cross_attn_tokens_dropout)
        return self.decoder(tgt, context=enc, context_mask=mask)

    @no_grad()
    def generate(self, src, start_tokens, seq_len, mask=None, temperature=1.0, top_k=None, top_p=None,
                 eos_token=None, use_cache=True):
        """Decode ``seq_len`` tokens after ``start_tokens`` (B, t0); returns (B, seq_len) ints.

        Greedy at ``temperature=0``; otherwise samples from the softmax at that
        temperature, optionally restricted to the ``top_k`` tokens or the
        smallest set with probability >= ``top_p``.  Rows that produced
        ``eos_token`` are padded with ``pad_value`` after it, and decoding stops
        once every row has.  The encoder runs once; with ``use_cache`` the
        decoder reuses keys and values (identical output, far fewer FLOPs).
        """
        if isinstance(seq_len, bool) or not isinstance(seq_len, numbers.Integral) or seq_len < 1:
            raise InputError(f"seq_len (tokens to generate) must be an integer >= 1, got {seq_len!r}")
        check_sampling(temperature, top_k, top_p)
        vocab = self.decoder.net.num_tokens
        if eos_token is not None and (isinstance(eos_token, bool) or not isinstance(eos_token, numbers.Integral)
                                      or not 0 <= eos_token < vocab):
            raise InputError(f"eos_token must be a token id in [0, {vocab}) or None, got {eos_token!r}")
        was_training = self.training
        self.eval()
        try:
            return self._generate(src, start_tokens, seq_len, mask, temperature, top_k, top_p,
                                  eos_token, use_cache)
        finally:
            self.train(was_training)

    def _generate(self, src, start_tokens, seq_len, mask, temperature, top_k, top_p, eos_token, use_cache):
        net = self.decoder.net
        dev = self.device
        src = token_ids(src, "src", self.encoder.num_tokens, dev)
        mask = bool_mask(mask, "mask", src.shape, dev)
        out = token_ids(start_tokens, "start_tokens", net.num_tokens, dev)
        if len(out) != len(src):
            raise ShapeError(f"start_tokens has batch size {len(out)} but src has {len(src)}")
        t0 = out.shape[1]
        if t0 + seq_len - 1 > net.max_seq_len:
            raise ShapeError(f"generating {seq_len} tokens after {t0} start tokens needs "
                             f"{t0 + seq_len - 1} decoder positions; max_seq_len is {net.max_seq_len}")
        xp = backend.get_array_module(out)
        context = self._encode(src, mask)
        cache = net.attn_layers.new_cache() if use_cache else None
        done = xp.zeros(len(out), dtype=bool)
        pad = self.decoder.pad_value
        for step in range(seq_len):
            feed = out if (cache is None or step == 0) else out[:, -1:]
            logits = net(feed, context=context, context_mask=mask, cache=cache)[:, -1].data  # (B, V)
            nxt = sample(logits, temperature, top_k, top_p)
            if eos_token is not None:
                nxt = xp.where(done, pad, nxt)
                done |= nxt == eos_token
            out = xp.concatenate([out, nxt[:, None].astype(out.dtype)], axis=1)
            if eos_token is not None and bool(done.all()):
                remaining = seq_len - step - 1
                out = xp.concatenate([out, xp.full((len(out), remaining), pad, dtype=out.dtype)], axis=1)
                break
        return out[:, t0:]


def check_sampling(temperature, top_k, top_p):
    """Raise InputError naming the argument unless temperature >= 0, top_k >= 1, 0 < top_p <= 1."""
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real) \
            or not math.isfinite(temperature) or temperature < 0:
        raise InputError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1):
        raise InputError(f"top_k must be an integer >= 1 or None, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, numbers.Real)
                              or not 0 < top_p <= 1):
        raise InputError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def sample(logits, temperature=1.0, top_k=None, top_p=None):
    """Next-token ids (B,) from logits (B, V): argmax at temperature 0, else a filtered sample.

    Sampling uses the Gumbel-max trick (argmax of logits/T + Gumbel noise), one
    vectorised draw for the whole batch.
    """
    check_sampling(temperature, top_k, top_p)
    xp = backend.get_array_module(logits)
    if temperature == 0:
        return logits.argmax(axis=-1)
    logits = logits.astype(np.float64) / temperature
    neg = xp.finfo(logits.dtype).min
    if top_k is not None:
        k = min(int(top_k), logits.shape[-1])
        kth = xp.sort(logits, axis=-1)[:, -k][:, None]
        logits = xp.where(logits < kth, neg, logits)
    if top_p is not None:
        order = xp.argsort(-logits, axis=-1)
        sorted_logits = xp.take_along_axis(logits, order, axis=-1)
        p = xp.exp(sorted_logits - sorted_logits[:, :1])
        p /= p.sum(axis=-1, keepdims=True)
        cum_before = xp.cumsum(p, axis=-1) - p                   # mass of better tokens
        drop_sorted = cum_before >= top_p                        # keep the smallest set reaching top_p
        drop = xp.zeros_like(drop_sorted)
        xp.put_along_axis(drop, order, drop_sorted, axis=-1)
        logits = xp.where(drop, neg, logits)
    u = backend.rng(backend.device_of(logits)).random(logits.shape)
    gumbel = -xp.log(-xp.log(xp.clip(u, 1e-20, 1.0)))
    return (logits + gumbel).argmax(axis=-1)


def drop_context_tokens(enc, mask, dropout):
    """Keep a random ceil(valid * (1 - dropout)) real tokens per row of ``enc`` (B, S, D).

    Returns the kept tokens (B, K, D) with K = ceil(S * (1 - dropout)) and their
    mask (B, K); padded tokens are never kept as real ones.
    """
    xp = enc.xp
    B, S, _ = enc.shape
    keep = 1.0 - dropout
    K = max(1, math.ceil(round(S * keep, 9)))                      # round: 10 * 0.3 is 3.0000000000000004
    if mask is None:
        mask = xp.ones((B, S), dtype=bool)
    scores = backend.rng(enc.device).random((B, S))
    scores = xp.where(mask, scores, -1.0)                           # padding sorts last
    idx = xp.argsort(-scores, axis=1)[:, :K]                        # (B, K)
    rows = xp.arange(B)[:, None]
    kept = enc[rows, idx]                                           # (B, K, D), differentiable gather
    n_keep = xp.ceil(xp.round(mask.sum(axis=1) * keep, 9)).astype(np.int64)   # (B,)
    new_mask = mask[rows, idx] & (xp.arange(K)[None, :] < n_keep[:, None])
    return kept, new_mask


XTransformer = EncoderDecoder
