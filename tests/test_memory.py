"""The graph of one training step does not outlive it, and memory does not grow."""
import gc
import tracemalloc
import weakref

import numpy as np

import minitx
from minitx import nn, optim


def setup(device):
    minitx.manual_seed(0)
    model = nn.XTransformer(dim=16, enc_num_tokens=9, enc_max_seq_len=6, dec_num_tokens=9, dec_max_seq_len=7,
                            enc_depth=1, dec_depth=1, enc_heads=2, dec_heads=2, enc_dim_head=8,
                            dec_dim_head=8, tie_token_emb=True).to(device)
    return model, optim.Adam(model.parameters(), lr=1e-3), np.random.default_rng(0)


def step(model, opt, g):
    src, tgt = g.integers(0, 9, size=(4, 6)), g.integers(0, 9, size=(4, 7))
    loss = model(src, tgt, mask=np.ones((4, 6), bool))
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


def test_graph_is_released_after_backward(device):
    model, opt, g = setup(device)
    loss = step(model, opt, g)
    node = weakref.ref(loss.creator)
    assert loss.creator.freed                       # backward freed what it saved
    del loss
    assert node() is None                           # and nothing else keeps the graph alive


def test_memory_does_not_grow_over_many_steps(device):
    model, opt, g = setup(device)
    for _ in range(10):                             # warm-up: optimizer state, caches
        step(model, opt, g)
    gc.collect()
    pool = minitx.backend.array_module("gpu").get_default_memory_pool() if device == "gpu" else None
    tracemalloc.start()                             # host memory; the GPU pool is read separately
    try:
        step(model, opt, g)
        gc.collect()
        first, first_gpu = tracemalloc.get_traced_memory()[0], pool and pool.used_bytes()
        for _ in range(60):
            step(model, opt, g)
        gc.collect()
        last, last_gpu = tracemalloc.get_traced_memory()[0], pool and pool.used_bytes()
    finally:
        tracemalloc.stop()
    assert last - first < 64 * 1024, f"memory grew by {last - first} bytes over 60 steps"
    if pool is not None:
        assert last_gpu - first_gpu < 64 * 1024, f"GPU memory grew by {last_gpu - first_gpu} bytes"
