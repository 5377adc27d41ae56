"""Side-by-side benchmark: minitx vs x-transformers (PyTorch) on the reverse-copy model.

    python benchmarks/bench.py                        # tiny, small, base on the CPU, 2 threads
    python benchmarks/bench.py --configs small --json results.json
    python benchmarks/bench.py --device gpu --capture # + xt-readme, + CUDA-graph rows

Threads: NumPy's BLAS (OpenBLAS, MKL) reads OPENBLAS_NUM_THREADS / OMP_NUM_THREADS /
MKL_NUM_THREADS when it loads, so this script sets them from ``--threads`` before
importing NumPy; PyTorch gets ``torch.set_num_threads(--threads)``.  Both
frameworks run in this same process on the same batches; on the CPU their
training steps alternate, so a slow spell of the machine hits both alike.
Source lengths spread over [S/2, S] as in the task (``--full-length``: no
padding, which minitx would skip on the CPU).  On the CPU peak memory is
the peak RSS of a separate short training process per framework (``--memory-child``);
on the GPU it is the peak memory each framework's allocator reserved during the timed
training steps, measured in this process.
"""
import argparse
import json
import math
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from configs import CONFIGS, CPU_DEFAULT, GPU_DEFAULT  # noqa: E402  (no NumPy import)

PARSER = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
PARSER.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=None,
                    help=f"default: {' '.join(CPU_DEFAULT)} (cpu), {' '.join(GPU_DEFAULT)} (gpu)")
PARSER.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
PARSER.add_argument("--threads", type=int, default=2)
PARSER.add_argument("--repeats", type=int, default=20, help="timed steps per config")
PARSER.add_argument("--warmup", type=int, default=5)
PARSER.add_argument("--gen-configs", nargs="*", default=["small"], help="configs whose generation is timed")
PARSER.add_argument("--gen-batch", type=int, default=256)
PARSER.add_argument("--gen-repeats", type=int, default=3)
PARSER.add_argument("--capture", action="store_true",
                    help="GPU: also time minitx's whole training step as one CUDA graph")
PARSER.add_argument("--tf32", action="store_true",
                    help="GPU: let minitx and PyTorch run float32 matmuls in TF32 (default: full float32)")
PARSER.add_argument("--full-length", action="store_true",
                    help="every source at full length: no padding (minitx skips padding on the CPU)")
PARSER.add_argument("--no-reference", action="store_true", help="skip x-transformers even if installed")
PARSER.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
PARSER.add_argument("--json", default=None, help="write the results to this file")
PARSER.add_argument("--memory-child", nargs=2, metavar=("FRAMEWORK", "CONFIG"), help=argparse.SUPPRESS)
ARGS = PARSER.parse_args()
GPU = ARGS.device == "gpu"
if ARGS.configs is None:
    ARGS.configs = GPU_DEFAULT if GPU else CPU_DEFAULT
for flag in ("capture", "tf32"):
    if getattr(ARGS, flag) and not GPU:
        PARSER.error(f"--{flag} needs --device gpu")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)

import numpy as np  # noqa: E402,F401  (BLAS loads here, with the thread count set above)

from runners import CAPTURE_WARMUP, CapturedMinitxRunner, MinitxRunner, TorchRunner, make_batches  # noqa: E402
from timing import time_generation, time_training, time_whole_steps  # noqa: E402

# The CUDA-graph step is compared with x-transformers' eager step timed the same way (one sync).
BASELINE = {"train step (CUDA graph)": "train step (1 sync)"}


def reference_problem():
    """Why x-transformers cannot run here (None when it can)."""
    try:
        import torch
        import x_transformers  # noqa: F401
    except ImportError:
        return "x-transformers not installed"
    if GPU and not torch.cuda.is_available():
        return "PyTorch has no CUDA device"
    return None


def peak_memory(framework, config):
    """Peak RSS (MB) of a child process that trains ``config`` for a few steps (CPU)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", framework, config,
           "--threads", str(ARGS.threads), "--device", ARGS.device] + (["--full-length"] if ARGS.full_length else [])
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
    for b in make_batches(cfg, 10, full_length=ARGS.full_length):
        runner.step(b)
    peak = _proc_status_mb("VmHWM")
    print(json.dumps({"peak_rss_mb": peak, "after_setup_mb": base, "training_mb": peak - base}))


def measure(classes, cfg, name):
    """Time each framework in ``classes`` on ``cfg``: [(rows, GPU reserved MB or None, CPU matmul share or None)].

    On the CPU the frameworks' training steps alternate (``time_training``).
    On the GPU they run one after the other, so each one's reserved memory is its own.
    """
    if not GPU:
        runners = [cls(cfg, ARGS.device) for cls in classes]
        all_rows, batches = time_training(runners, cfg, ARGS.repeats, ARGS.warmup, ARGS.full_length)
        return [(extras(runner, rows, cfg, name), None,
                 runner.matmul_fraction(batches[:5]) if isinstance(runner, MinitxRunner) else None)
                for runner, rows in zip(runners, all_rows)]
    out = []
    for cls in classes:
        if not ARGS.no_memory:
            cls.reset_gpu_memory()
        runner = cls(cfg, ARGS.device)
        (rows,), batches = time_training([runner], cfg, ARGS.repeats, ARGS.warmup, ARGS.full_length)
        reserved = None if ARGS.no_memory else cls.gpu_reserved_mb()
        # op_timer clocks the host side only, which says nothing while GPU kernels run asynchronously.
        out.append((extras(runner, rows, cfg, name), reserved, None))
    return out


def extras(runner, rows, cfg, name):
    """``rows`` plus the one-sync step (with --capture) and generation (in --gen-configs)."""
    if ARGS.capture:
        rows["train step (1 sync)"] = time_whole_steps(runner, cfg, ARGS.repeats, ARGS.warmup, ARGS.full_length)
    if name in ARGS.gen_configs:
        rows.update(time_generation(runner, cfg, ARGS.gen_batch, ARGS.gen_repeats, ARGS.full_length))
    return rows


def measure_captured(cfg):
    """minitx's whole step as a CUDA graph, on a fresh model: (row, GPU reserved MB or None, last loss)."""
    if not ARGS.no_memory:
        CapturedMinitxRunner.reset_gpu_memory()
    runner = CapturedMinitxRunner(cfg, ARGS.device)
    # CAPTURE_WARMUP eager calls, one capturing call, then ARGS.warmup untimed replays.
    row = time_whole_steps(runner, cfg, ARGS.repeats, CAPTURE_WARMUP + 1 + ARGS.warmup, ARGS.full_length)
    reserved = None if ARGS.no_memory else runner.graph_reserved_mb()
    loss = float(runner.last_loss.item())
    if not math.isfinite(loss):
        print(f"warning: {cfg.name}: the CUDA-graph step's last loss is {loss}")
    return row, reserved, loss


def run_config(name, ref):
    cfg = CONFIGS[name]
    # CPU: both frameworks together (their steps alternate).  GPU: x-transformers after the
    # CUDA-graph run below, as before, so PyTorch's cached memory is not held during the capture.
    both = ref and not GPU
    measured = measure([MinitxRunner, TorchRunner] if both else [MinitxRunner], cfg, name)
    rows, mem, frac = measured[0]
    entry = {"minitx": rows, "x_transformers": {}, "matmul_fraction": frac}
    if GPU and not ARGS.no_memory:
        entry["memory"] = {"unit": "GPU reserved MB", "minitx": mem}
    if ARGS.capture:
        try:
            rows["train step (CUDA graph)"], graph_mem, entry["graph_last_loss"] = measure_captured(cfg)
        except Exception as e:          # report and go on: the eager rows still count
            print(f"warning: {name}: the CUDA-graph step failed: {type(e).__name__}: {e}")
            entry["graph_error"], graph_mem = f"{type(e).__name__}: {e}", None
        if "memory" in entry:
            entry["memory"]["minitx (CUDA graph)"] = graph_mem
    if ref:
        entry["x_transformers"], their_mem, _ = measured[1] if both else measure([TorchRunner], cfg, name)[0]
        if "memory" in entry:
            entry["memory"]["x_transformers"] = their_mem
    if not GPU and not ARGS.no_memory:
        entry["memory"] = {"unit": "peak RSS MB", "minitx": peak_memory("minitx", name)}
        if ref:
            entry["memory"]["x_transformers"] = peak_memory("torch", name)
    entry["ratio"] = {m: r["median_ms"] / t["median_ms"] for m, r in rows.items()
                      if (t := entry["x_transformers"].get(BASELINE.get(m, m)))}
    return entry


def print_config(name, entry):
    theirs, ratios = entry["x_transformers"], entry["ratio"]
    # training rows first, then generation
    for measure_name, r in sorted(entry["minitx"].items(), key=lambda kv: kv[0].startswith("generate")):
        t = theirs.get(BASELINE.get(measure_name, measure_name))
        ratio = f"{ratios[measure_name]:6.2f}" if measure_name in ratios else "     -"
        tms = f"{t['median_ms']:12.1f}" if t else f"{'-':>12}"
        tok = f"{r['tokens_per_s']:9,.0f}" if "tokens_per_s" in r else ""
        spread = f"{r['median_ms']:.1f}/{r['min_ms']:.1f}/{r['max_ms']:.1f}"
        print(f"{name:9} {measure_name:26} {spread:>26} {tms} {ratio} {tok}")
    if entry["matmul_fraction"] is not None:
        print(f"{name:9} {'matmul share of train step':26} {entry['matmul_fraction'] * 100:25.0f}%")
    m = entry.get("memory")
    if m and GPU:
        x = m.get("x_transformers")
        for key, label in (("minitx", "GPU reserved MB"), ("minitx (CUDA graph)", "GPU reserved MB (graph)")):
            if m.get(key) is not None:
                ratio = f"{m[key] / x:6.2f}" if x else "     -"
                xs = f"{x:12.0f}" if x else f"{'-':>12}"
                print(f"{name:9} {label:26} {m[key]:26.0f} {xs} {ratio}")
    elif m:
        line = f"{name:9} {'peak RSS MB (training)':26} {m['minitx']['peak_rss_mb']:18.0f} ({m['minitx']['training_mb']:.0f})"
        if "x_transformers" in m:
            x = m["x_transformers"]
            line += f"  x-transformers {x['peak_rss_mb']:.0f} ({x['training_mb']:.0f})"
        print(line)


def set_precision(ref):
    """Full float32 matmuls in both frameworks, or TF32 in both with --tf32 (GPU only)."""
    if not GPU:
        return "float32"
    import minitx
    minitx.backend.set_matmul_precision("tf32" if ARGS.tf32 else "highest")
    if ref:
        import torch
        torch.backends.cuda.matmul.allow_tf32 = ARGS.tf32
        torch.backends.cudnn.allow_tf32 = ARGS.tf32
    return "tf32" if ARGS.tf32 else "float32"


def main():
    if ARGS.memory_child:
        return memory_child(*ARGS.memory_child)
    device_name = "cpu"
    if GPU:
        import minitx
        try:
            xp = minitx.backend.array_module("gpu")
        except minitx.DeviceError as e:
            PARSER.error(f"--device gpu: {e}")
        device_name = xp.cuda.runtime.getDeviceProperties(xp.cuda.Device().id)["name"].decode()
    problem = "--no-reference" if ARGS.no_reference else reference_problem()
    ref = problem is None
    if ref:
        import torch
        torch.set_num_threads(ARGS.threads)
    precision = set_precision(ref)
    results = {"device": ARGS.device, "device_name": device_name, "threads": ARGS.threads,
               "repeats": ARGS.repeats, "warmup": ARGS.warmup, "matmul_precision": precision,
               "capture": ARGS.capture, "reference": ref, "full_length": ARGS.full_length, "configs": {}}
    print(f"device {ARGS.device}{f' ({device_name})' if GPU else ''}, {ARGS.threads} threads, {precision} matmuls"
          + (", CUDA-graph rows" if ARGS.capture else "")
          + f", {ARGS.repeats} timed steps after {ARGS.warmup} warm-up"
          + (", full-length sources (no padding)" if ARGS.full_length else "")
          + ("" if ref else f"; {problem}: minitx only"))
    if ARGS.capture:
        print("(CUDA graph) ratio is against x-transformers' eager 'train step (1 sync)'")
    header = f"{'config':9} {'measure':26} {'minitx ms (med/min/max)':>26} {'x-transf. ms':>12} {'ratio':>6} {'tok/s':>9}"
    print(header + "\n" + "-" * len(header))
    for name in ARGS.configs:
        results["configs"][name] = entry = run_config(name, ref)
        print_config(name, entry)
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {ARGS.json}")


if __name__ == "__main__":
    main()
