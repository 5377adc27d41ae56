"""Side-by-side benchmark: minitx vs x-transformers (PyTorch) on the reverse-copy model.

    python benchmarks/bench.py                        # tiny, small, base on the CPU, 2 threads
    python benchmarks/bench.py --configs small --json results.json
    python benchmarks/bench.py --device gpu

Threads: NumPy's BLAS (OpenBLAS, MKL) reads OPENBLAS_NUM_THREADS / OMP_NUM_THREADS /
MKL_NUM_THREADS when it loads, so this script sets them from ``--threads`` before
importing NumPy; PyTorch gets ``torch.set_num_threads(--threads)``.  Both
frameworks run in this same process on the same batches.  Peak memory is the peak
RSS of a separate short training process per framework (``--memory-child``).
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=["tiny", "small", "base"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=20, help="timed steps per config")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--gen-configs", nargs="*", default=["small"], help="configs whose generation is timed")
    p.add_argument("--gen-batch", type=int, default=256)
    p.add_argument("--gen-repeats", type=int, default=3)
    p.add_argument("--no-reference", action="store_true", help="skip x-transformers even if installed")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--json", default=None, help="write the results to this file")
    p.add_argument("--memory-child", nargs=2, metavar=("FRAMEWORK", "CONFIG"), help=argparse.SUPPRESS)
    return p.parse_args()


ARGS = parse_args()
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from configs import CONFIGS  # noqa: E402
from runners import MinitxRunner, TorchRunner, make_batches  # noqa: E402


def reference_available():
    try:
        import torch  # noqa: F401
        import x_transformers  # noqa: F401
    except ImportError:
        return False
    return True


def stats(seconds):
    ms = np.array(seconds) * 1000
    return {"median_ms": float(np.median(ms)), "min_ms": float(ms.min()), "max_ms": float(ms.max())}


def time_training(runner, cfg, repeats, warmup):
    batches = make_batches(cfg, warmup + repeats)
    for b in batches[:warmup]:
        runner.step(b)
    parts = np.array([runner.step(b) for b in batches[warmup:]])      # (repeats, 3)
    tokens = cfg.batch * (2 * cfg.src_len + 1)
    rows = {"train step": stats(parts.sum(1)), "forward": stats(parts[:, 0]), "backward": stats(parts[:, 1])}
    rows["train step"]["tokens_per_s"] = tokens / (rows["train step"]["median_ms"] / 1000)
    return rows, batches


def time_generation(runner, cfg, n):
    src, _, mask = make_batches(cfg, 1, seed=1)[0]
    reps = -(-n // cfg.batch)
    src, mask = np.tile(src, (reps, 1))[:n], np.tile(mask, (reps, 1))[:n]
    runner.generate(src[:8], mask[:8], 4, True)                            # warm-up
    return {f"generate {n} ({'cache' if c else 'no cache'})":
            stats([runner.generate(src, mask, cfg.src_len + 1, c) for _ in range(ARGS.gen_repeats)])
            for c in (True, False)}


def peak_memory(framework, config):
    """Peak RSS (MB) of a child process that trains ``config`` for a few steps."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", framework, config,
           "--threads", str(ARGS.threads), "--device", ARGS.device]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _proc_status_mb(field):
    """A memory field of /proc/self/status in MB (VmHWM: peak RSS of this process, reset by exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_child(framework, config):
    cfg = CONFIGS[config]
    runner = (MinitxRunner if framework == "minitx" else TorchRunner)(cfg, ARGS.device)
    base = _proc_status_mb("VmRSS")
    for b in make_batches(cfg, 10):
        runner.step(b)
    peak = _proc_status_mb("VmHWM")
    print(json.dumps({"peak_rss_mb": peak, "after_setup_mb": base, "training_mb": peak - base}))


def main():
    if ARGS.memory_child:
        return memory_child(*ARGS.memory_child)
    ref = not ARGS.no_reference and reference_available()
    if ref:
        import torch
        torch.set_num_threads(ARGS.threads)
    results = {"device": ARGS.device, "threads": ARGS.threads, "configs": {}}
    print(f"device {ARGS.device}, {ARGS.threads} threads, {ARGS.repeats} timed steps after {ARGS.warmup} warm-up"
          + ("" if ref else "; x-transformers not installed: minitx only"))
    header = f"{'config':6} {'measure':26} {'minitx ms (med/min/max)':>26} {'x-transf. ms':>12} {'ratio':>6} {'tok/s':>9}"
    print(header + "\n" + "-" * len(header))
    for name in ARGS.configs:
        cfg = CONFIGS[name]
        ours = MinitxRunner(cfg, ARGS.device)
        rows, batches = time_training(ours, cfg, ARGS.repeats, ARGS.warmup)
        frac = ours.matmul_fraction(batches[:5])
        theirs_rows = {}
        if ref:
            theirs = TorchRunner(cfg, ARGS.device)
            theirs_rows, _ = time_training(theirs, cfg, ARGS.repeats, ARGS.warmup)
        if name in ARGS.gen_configs:
            rows.update(time_generation(ours, cfg, ARGS.gen_batch))
            if ref:
                theirs_rows.update(time_generation(theirs, cfg, ARGS.gen_batch))
        entry = {"minitx": rows, "x_transformers": theirs_rows, "matmul_fraction": frac}
        if not ARGS.no_memory:
            entry["memory"] = {"minitx": peak_memory("minitx", name)}
            if ref:
                entry["memory"]["x_transformers"] = peak_memory("torch", name)
        results["configs"][name] = entry
        for measure, r in rows.items():
            t = theirs_rows.get(measure)
            ratio = f"{r['median_ms'] / t['median_ms']:6.2f}" if t else "     -"
            tms = f"{t['median_ms']:12.1f}" if t else f"{'-':>12}"
            tok = f"{r['tokens_per_s']:9,.0f}" if "tokens_per_s" in r else ""
            spread = f"{r['median_ms']:.1f}/{r['min_ms']:.1f}/{r['max_ms']:.1f}"
            print(f"{name:6} {measure:26} {spread:>26} {tms} {ratio} {tok}")
        print(f"{name:6} {'matmul share of train step':26} {frac * 100:25.0f}%")
        if "memory" in entry:
            m = entry["memory"]
            line = f"{name:6} {'peak RSS MB (training)':26} {m['minitx']['peak_rss_mb']:18.0f} ({m['minitx']['training_mb']:.0f})"
            if "x_transformers" in m:
                x = m["x_transformers"]
                line += f"  x-transformers {x['peak_rss_mb']:.0f} ({x['training_mb']:.0f})"
            print(line)
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {ARGS.json}")


if __name__ == "__main__":
    main()
