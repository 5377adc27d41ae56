"""Timing loops shared by the benchmark: per-repetition seconds -> median/min/max in ms."""
import numpy as np

from runners import make_batches


def stats(seconds):
    ms = np.array(seconds) * 1000
    return {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def tokens_per_s(row, cfg):
    row["tokens_per_s"] = cfg.batch * (2 * cfg.src_len + 1) / (row["median_ms"] / 1000)
    return row


def time_training(runner, cfg, repeats, warmup):
    batches = make_batches(cfg, warmup + repeats)
    for b in batches[:warmup]:
        runner.step(b)
    parts = np.array([runner.step(b) for b in batches[warmup:]])      # (repeats, 3)
    rows = {"train step": tokens_per_s(stats(parts.sum(1)), cfg),
            "forward": stats(parts[:, 0]), "backward": stats(parts[:, 1])}
    return rows, batches


def time_whole_steps(runner, cfg, repeats, warmup):
    """Median etc. of ``repeats`` whole steps (one sync each) after ``warmup`` untimed ones."""
    batches = make_batches(cfg, warmup + repeats)
    for b in batches[:warmup]:
        runner.whole_step(b)
    return tokens_per_s(stats([runner.whole_step(b) for b in batches[warmup:]]), cfg)


def time_generation(runner, cfg, n, repeats):
    src, _, mask = make_batches(cfg, 1, seed=1)[0]
    reps = -(-n // cfg.batch)
    src, mask = np.tile(src, (reps, 1))[:n], np.tile(mask, (reps, 1))[:n]
    runner.generate(src[:8], mask[:8], 4, True)                            # warm-up
    return {f"generate {n} ({'cache' if c else 'no cache'})":
            stats([runner.generate(src, mask, cfg.src_len + 1, c) for _ in range(repeats)])
            for c in (True, False)}
