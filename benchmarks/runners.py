"""Timed training steps and generation for minitx and, when installed, x-transformers.

Both frameworks get the same batches (NumPy arrays made once), the same model
configuration and the same thread count; each measurement is a list of
seconds per repetition, taken after warm-up.
"""
import contextlib
import time

import numpy as np

PAD, BOS, EOS = 0, 1, 2


def make_batches(cfg, n, seed=0):
    """``n`` reverse-copy batches: (src (B, S), tgt (B, S+2) with -100 labels, mask (B, S))."""
    g = np.random.default_rng(seed)
    out = []
    S = cfg.src_len
    for _ in range(n):
        lens = g.integers(S // 2, S + 1, size=cfg.batch)
        pos = np.arange(S)
        mask = pos[None, :] < lens[:, None]
        src = np.where(mask, g.integers(3, cfg.vocab, size=(cfg.batch, S)), PAD)
        rev = np.clip(lens[:, None] - 1 - pos[None, :], 0, S - 1)
        tgt = np.full((cfg.batch, S + 2), -100)
        tgt[:, 0] = BOS
        tgt[:, 1:-1] = np.where(mask, np.take_along_axis(src, rev, axis=1), -100)
        tgt[np.arange(cfg.batch), lens + 1] = EOS
        out.append((src, tgt, mask))
    return out


@contextlib.contextmanager
def op_timer(classes):
    """Accumulate the seconds spent in forward/backward of the given Function classes."""
    total = [0.0]
    saved = []
    for cls in classes:
        for name in ("forward", "backward"):
            orig = cls.__dict__[name]
            saved.append((cls, name, orig))

            def timed(self, *a, _orig=orig, **k):
                t = time.perf_counter()
                try:
                    return _orig(self, *a, **k)
                finally:
                    total[0] += time.perf_counter() - t
            setattr(cls, name, timed)
    try:
        yield total
    finally:
        for cls, name, orig in saved:
            setattr(cls, name, orig)


class Runner:
    """A model + optimizer pair; subclasses set model, opt, put (array -> device) and sync."""

    def step(self, batch):
        """One training step; returns (forward s, backward s, optimizer s)."""
        src, tgt, mask = (self.put(a) for a in batch)
        self.sync()
        t0 = time.perf_counter()
        loss = self.model(src, tgt, mask=mask)
        self.sync()
        t1 = time.perf_counter()
        self.opt.zero_grad()
        loss.backward()
        self.sync()
        t2 = time.perf_counter()
        self.opt.step()
        self.sync()
        return t1 - t0, t2 - t1, time.perf_counter() - t2


class MinitxRunner(Runner):
    """minitx's XTransformer + Adam on ``device``."""

    name = "minitx"

    def __init__(self, cfg, device="cpu"):
        import minitx
        from minitx import nn, optim
        self.minitx, self.device = minitx, device
        minitx.manual_seed(0)
        self.model = nn.XTransformer(
            dim=cfg.dim, tie_token_emb=True, pad_value=PAD, ignore_index=-100,
            enc_num_tokens=cfg.vocab, enc_depth=cfg.depth, enc_heads=cfg.heads, enc_dim_head=cfg.dim_head,
            enc_max_seq_len=cfg.src_len,
            dec_num_tokens=cfg.vocab, dec_depth=cfg.depth, dec_heads=cfg.heads, dec_dim_head=cfg.dim_head,
            dec_max_seq_len=cfg.src_len + 2).to(device)
        self.opt = optim.Adam(self.model.parameters(), lr=1e-4)
        xp = minitx.backend.array_module(device)
        self.put = xp.asarray

    def sync(self):
        self.minitx.backend.synchronize(self.device)

    def matmul_fraction(self, batches):
        """Share of the training step spent inside matmul / linear ops."""
        from minitx.autograd.ops.linalg import Linear, MatMul
        with op_timer([MatMul, Linear]) as inside:
            t = time.perf_counter()
            for b in batches:
                self.step(b)
            whole = time.perf_counter() - t
        return inside[0] / whole

    def generate(self, src, mask, seq_len, use_cache):
        t = time.perf_counter()
        self.model.generate(self.put(src), self.put(np.full((len(src), 1), BOS)), seq_len,
                            mask=self.put(mask), temperature=0.0, use_cache=use_cache)
        self.sync()
        return time.perf_counter() - t


class TorchRunner(Runner):
    """x-transformers' XTransformer + torch.optim.Adam (needs torch and x-transformers)."""

    name = "x-transformers"

    def __init__(self, cfg, device="cpu"):
        import torch
        from x_transformers import XTransformer
        self.torch = torch
        self.device = "cuda" if device == "gpu" else "cpu"
        torch.manual_seed(0)
        self.model = XTransformer(
            dim=cfg.dim, tie_token_emb=True, pad_value=PAD, ignore_index=-100,
            enc_num_tokens=cfg.vocab, enc_depth=cfg.depth, enc_heads=cfg.heads, enc_attn_dim_head=cfg.dim_head,
            enc_max_seq_len=cfg.src_len,
            dec_num_tokens=cfg.vocab, dec_depth=cfg.depth, dec_heads=cfg.heads, dec_attn_dim_head=cfg.dim_head,
            dec_max_seq_len=cfg.src_len + 2).to(self.device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def put(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def generate(self, src, mask, seq_len, use_cache):
        t = time.perf_counter()
        with self.torch.no_grad():
            self.model.generate(self.put(src), self.put(np.full((len(src), 1), BOS)), seq_len,
                                mask=self.put(mask), temperature=0.0, cache_kv=use_cache)
        self.sync()
        return time.perf_counter() - t
