"""Timed training steps and generation for minitx and, when installed, x-transformers.

Both frameworks get the same batches (NumPy arrays made once), the same model
configuration and the same thread count; each measurement is a list of
seconds per repetition, taken after warm-up.  On the GPU each framework's peak
memory is what its own allocator reserved (CuPy's default pool for minitx, PyTorch's
caching allocator for x-transformers): the two are separate, so both are measured in
this one process.
"""
import contextlib
import gc
import time

import numpy as np

PAD, BOS, EOS = 0, 1, 2
CAPTURE_WARMUP = 3    # eager calls CapturedStep makes before the call that captures the graph


def make_batches(cfg, n, seed=0, full_length=False):
    """``n`` reverse-copy batches: (src (B, S), tgt (B, S+2) with -100 labels, mask (B, S)).

    Source lengths are uniform in [S/2, S] (a quarter of the positions are
    padding), or all S with ``full_length``.
    """
    g = np.random.default_rng(seed)
    out = []
    S = cfg.src_len
    for _ in range(n):
        lens = g.integers(S // 2, S + 1, size=cfg.batch)
        if full_length:
            lens[:] = S
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

    def whole_step(self, batch):
        """One training step with a single sync at its end; returns seconds."""
        src, tgt, mask = (self.put(a) for a in batch)
        self.sync()
        t = time.perf_counter()
        self.opt.zero_grad()
        loss = self.model(src, tgt, mask=mask)
        loss.backward()
        self.opt.step()
        self.sync()
        return time.perf_counter() - t


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

    @staticmethod
    def _gpu_pool():
        import minitx
        return minitx.backend.array_module("gpu").get_default_memory_pool()

    @classmethod
    def reset_gpu_memory(cls):
        """Return CuPy's cached free blocks to the driver (call before building the model)."""
        gc.collect()
        cls._gpu_pool().free_all_blocks()

    @classmethod
    def gpu_reserved_mb(cls):
        """MB held by CuPy's default pool.  The pool keeps freed blocks for reuse and
        gives nothing back while the process runs, so after the timed steps this is
        the peak reserved since :meth:`reset_gpu_memory`."""
        return cls._gpu_pool().total_bytes() / 2**20

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


class CapturedMinitxRunner(MinitxRunner):
    """MinitxRunner whose whole training step replays one CUDA graph (GPU only).

    ``minitx.cuda_graph.CapturedStep`` runs the first CAPTURE_WARMUP calls eagerly,
    captures on the next and replays from then on, copying the inputs into its
    static buffers.
    """

    name = "minitx (CUDA graph)"

    def __init__(self, cfg, device="gpu"):
        super().__init__(cfg, device)
        from minitx.cuda_graph import CapturedStep
        self.captured = CapturedStep(self._train_step, optimizers=[self.opt], warmup=CAPTURE_WARMUP)

    def _train_step(self, src, tgt, mask):
        self.opt.zero_grad()
        loss = self.model(src, tgt, mask=mask)
        loss.backward()
        self.opt.step()
        return loss

    def whole_step(self, batch):
        src, tgt, mask = (self.put(a) for a in batch)
        self.sync()
        t = time.perf_counter()
        self.last_loss = self.captured(src, tgt, mask)
        self.sync()
        return time.perf_counter() - t

    def graph_reserved_mb(self):
        """MB held after the capture: CuPy's default pool (parameters, optimizer state; CapturedStep
        frees the warm-up's blocks) plus the graph's private pool.  A steady-state figure: during
        the capture itself both the warm-up's blocks and the new pool are held."""
        pool = self.captured.memory_pool
        return self.gpu_reserved_mb() + (pool.total_bytes() / 2**20 if pool is not None else 0.0)


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

    @staticmethod
    def reset_gpu_memory():
        """Empty PyTorch's cache and restart its peak statistics (call before building the model)."""
        import torch
        gc.collect()
        torch.cuda.init()                 # the allocator's statistics exist once CUDA is up
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()

    @staticmethod
    def gpu_reserved_mb():
        """Peak MB reserved by PyTorch's caching allocator since :meth:`reset_gpu_memory`."""
        import torch
        return torch.cuda.max_memory_reserved() / 2**20

    def put(self, a):
        return self.torch.from_numpy(np.ascontiguousarray(a)).to(self.device)

    def generate(self, src, mask, seq_len, use_cache):
        t = time.perf_counter()
        with self.torch.no_grad():
            self.model.generate(self.put(src), self.put(np.full((len(src), 1), BOS)), seq_len,
                                mask=self.put(mask), temperature=0.0, cache_kv=use_cache)
        self.sync()
        return time.perf_counter() - t
