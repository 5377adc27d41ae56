"""Where a minitx training step spends its time: cProfile over a few steps, top functions.

    python benchmarks/profile_step.py --config small             # CPU
    python benchmarks/profile_step.py --config base --device gpu # GPU (host-side time: launches, Python)

On the GPU the profile shows the host's side of the step (Python, kernel
launches); the device runs behind it.  The ms-per-step line is measured under
the profiler: compare the profile's host time with bench.py's step time to see
which side sets the pace.
"""
import argparse
import cProfile
import os
import pstats
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(HERE), HERE]

from configs import CONFIGS  # noqa: E402
from runners import MinitxRunner, make_batches  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", default="small", choices=list(CONFIGS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    cfg = CONFIGS[args.config]
    runner = MinitxRunner(cfg, args.device)
    batches = make_batches(cfg, args.steps + 3)
    for b in batches[:3]:                                   # warm-up: kernels compile
        runner.whole_step(b)
    prof = cProfile.Profile()
    t = time.perf_counter()
    prof.enable()
    for b in batches[3:]:
        runner.whole_step(b)
    prof.disable()
    ms = (time.perf_counter() - t) / args.steps * 1000
    print(f"{args.config} on {args.device}: {ms:.1f} ms per step (under the profiler)")
    pstats.Stats(prof).sort_stats("tottime").print_stats(args.top)


if __name__ == "__main__":
    main()
