"""Timing loops shared by the benchmark: per-repetition seconds -> median/min/max in ms."""
import time

import numpy as np

from runners import make_batches


BLOCK = 5        # timed steps per runner before switching to the other
SETTLE = 0.3     # seconds: longer than OpenBLAS's and OpenMP's spin-wait before their threads sleep


def stats(seconds):
    ms = np.array(seconds) * 1000
    return {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def tokens_per_s(row, cfg):
    row["tokens_per_s"] = cfg.batch * (2 * cfg.src_len + 1) / (row["median_ms"] / 1000)
    return row


def time_training(runners, cfg, repeats, warmup, full_length=False):
    """Train-step, forward and backward rows for each runner, and the batches used.

    With several runners the timed steps alternate in blocks of ``BLOCK``
    (A B, B A, A B ...), so a slow spell of the machine (seconds long, up to
    40% here) hits every runner alike instead of whichever ran during it.
    Before each block the process sleeps ``SETTLE`` seconds and runs one
    untimed step: BLAS and OpenMP worker threads spin for a while after their
    last call, and one framework's spinning threads would slow the other's.
    """
    batches = make_batches(cfg, warmup + repeats, full_length=full_length)
    for runner in runners:
        for b in batches[:warmup]:
            runner.step(b)
    parts = [[] for _ in runners]
    timed = batches[warmup:]
    for i, start in enumerate(range(0, repeats, BLOCK)):
        for k in (range(len(runners)) if i % 2 == 0 else reversed(range(len(runners)))):
            if len(runners) > 1:
                time.sleep(SETTLE)
                runners[k].step(timed[start])
            parts[k].extend(runners[k].step(b) for b in timed[start:start + BLOCK])
    rows = []
    for p in parts:
        p = np.array(p)                                                   # (repeats, 3)
        rows.append({"train step": tokens_per_s(stats(p.sum(1)), cfg),
                     "forward": stats(p[:, 0]), "backward": stats(p[:, 1])})
    return rows, batches


def time_whole_steps(runner, cfg, repeats, warmup, full_length=False):
    """Median etc. of ``repeats`` whole steps (one sync each) after ``warmup`` untimed ones."""
    batches = make_batches(cfg, warmup + repeats, full_length=full_length)
    for b in batches[:warmup]:
        runner.whole_step(b)
    return tokens_per_s(stats([runner.whole_step(b) for b in batches[warmup:]]), cfg)


def time_generation(runner, cfg, n, repeats, full_length=False):
    src, _, mask = make_batches(cfg, 1, seed=1, full_length=full_length)[0]
    reps = -(-n // cfg.batch)
    src, mask = np.tile(src, (reps, 1))[:n], np.tile(mask, (reps, 1))[:n]
    runner.generate(src[:8], mask[:8], 4, True)                            # warm-up
    return {f"generate {n} ({'cache' if c else 'no cache'})":
            stats([runner.generate(src, mask, cfg.src_len + 1, c) for _ in range(repeats)])
            for c in (True, False)}
