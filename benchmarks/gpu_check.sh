#!/usr/bin/env bash
# GPU validation in one command, for a machine with a CUDA GPU and CuPy:
#   1. the fused-kernel and CUDA-graph tests, 2. the example on the GPU,
#   3. the GPU benchmark against x-transformers (when torch + x-transformers import),
#   4. (stages "bench_tf32" and "profile", not run by default) the benchmark with TF32
#      matmuls in both frameworks, and a cProfile of eager GPU steps,
#   5. the whole test suite with the GPU switch (pytest-xdist spreads it when installed).
# Logs and the benchmark JSON go to $OUT (default ./gpu_check_out).  The exit status is 0
# only when every stage passed.
#
# The x-transformers rows need torch (with CUDA) plus x-transformers and its pure-Python
# dependencies; on a machine without network access, bring them as wheels:
#   pip download --no-deps -d .whl x-transformers==2.31.10 torch-einops-utils loguru einx frozendict
#   pip install --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site
#
#   bash benchmarks/gpu_check.sh                  # everything
#   STAGES="kernels suite" bash benchmarks/gpu_check.sh
#   BENCH_ARGS="--configs base --capture --tf32" bash benchmarks/gpu_check.sh
set -u -o pipefail
OUT=${OUT:-gpu_check_out}
STAGES=${STAGES:-"kernels example bench suite"}
BENCH_ARGS=${BENCH_ARGS:-"--capture --repeats 20 --warmup 5"}
BENCH_TF32_ARGS=${BENCH_TF32_ARGS:-"--capture --configs base xt-readme --gen-configs"}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PYTHON:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
$PY -c "import cupy, numpy, sys; print('python', sys.version.split()[0], 'cupy', cupy.__version__, 'numpy', numpy.__version__)"
if ! $PY -c "import sys, minitx; sys.exit(not minitx.gpu_available())"; then
  echo "no usable CUDA GPU (minitx.gpu_available() is False): every GPU test would skip; stopping"
  exit 2
fi
XDIST=""
$PY -c "import xdist" 2>/dev/null && XDIST="-n 8"

failed=""
for stage in $STAGES; do
  echo "=== $stage"
  start=$(date +%s)
  { case $stage in
    kernels)
      timeout ${T_KERNELS:-150} $PY -m pytest -q -p no:cacheprovider --device gpu -rfE \
        tests/test_gpu_kernels.py tests/test_cuda_graph.py tests/test_cublas.py 2>&1 | tee "$OUT/kernels.log" | tail -25 ;;
    example)
      timeout ${T_EXAMPLE:-150} $PY examples/reverse_copy.py --device gpu 2>&1 | tee "$OUT/example.log" | tail -12 ;;
    bench)
      timeout ${T_BENCH:-240} $PY benchmarks/bench.py --device gpu $BENCH_ARGS --json "$OUT/bench_gpu.json" 2>&1 \
        | tee "$OUT/bench.log" | tail -45 ;;
    bench_tf32)
      timeout ${T_BENCH:-240} $PY benchmarks/bench.py --device gpu --tf32 $BENCH_TF32_ARGS \
        --json "$OUT/bench_gpu_tf32.json" 2>&1 | tee "$OUT/bench_tf32.log" | tail -25 ;;
    profile)
      timeout ${T_PROFILE:-60} $PY benchmarks/profile_step.py --device gpu --config ${PROFILE_CONFIG:-base} \
        --steps 10 --top 30 2>&1 | tee "$OUT/profile.log" | tail -45 ;;
    suite)
      timeout ${T_SUITE:-300} $PY -m pytest -q -p no:cacheprovider --device gpu $XDIST -rfE tests 2>&1 \
        | tee "$OUT/suite.log" | tail -40 ;;
    *) echo "unknown stage $stage"; false ;;
  esac; } || failed="$failed $stage"
  echo "=== $stage took $(( $(date +%s) - start )) s"
done
if [ -n "$failed" ]; then
  echo "FAILED stages:$failed"
  exit 1
fi
echo "all stages passed"
