#!/usr/bin/env bash
# One-shot GPU benchmark (protocols A, B, C with the floor runs, L, and the parity-fixture check),
# sized (by estimate: it has not run on a GPU yet) to finish in about 5 minutes on one H100/H200.
# Writes JSON reports and logs to $OUT (the device tool's output folder) or /tmp/adcvsr-gpu-check.
#
# Before calling the device, in the repository root of this machine (the device sees only the
# repository, not ../shared, and has no PyAV and no network):
#
#   grep -qx '/.bench-data/' .git/info/exclude || echo /.bench-data/ >> .git/info/exclude
#   mkdir -p .bench-data && cp ../shared/media/dove-demo/005.mp4 \
#       ../shared/fixtures/adcsr/parity_a.safetensors \
#       ../shared/fixtures/adcsr/adcsr_checkpoint_keys.json .bench-data/
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#       --platform manylinux2014_x86_64 -d .whl av==18.1.0      # /.whl/ is git-ignored
#
# then run `bash benchmarks/gpu_check.sh` there with carry [".bench-data", ".whl"] and
# timeout_s 600 (the stages' own limits add up to 580 s). Without .bench-data protocol C uses a generated 320x240 clip and the
# parity check is skipped; without the av wheel protocol C is skipped.
#
# Stages (each under its own timeout; every report is rewritten after each protocol, so a stage
# cut short still leaves its finished part in the JSON):
#   Precision: --precision auto, which is fp16 on CUDA (bf16 misses the 1e-2 parity bound).
#   1. A: pipeline, eager (contiguous), autocast, CUDA graphs; both networks (AdcSR dims,
#      AdcVSR dims); parity fixture bf16/fp16/fp32.
#   2. B: pipeline and eager, automatic tiling, one 854x480 frame per run.
#   3. C: pipeline, 005.mp4 and a 200-frame clip made from it, E2E_RUNS timed runs; then the
#      floor runs: the null network (nearest x4) and a small random network, each file to file
#      against the one-thread loop, interleaved, median of E2E_RUNS (>= 5), at 854x480 -> x4
#      (50 frames) and 1920x1080 -> x4 (25 frames).
#   4. L: every memory layout (contiguous / channels-last per part), 25 x 128 -> 512, AdcSR dims,
#      interleaved: the fastest is the candidate for fastpath.DEFAULT_LAYOUTS["cuda"].
#   5. A, torch.compile (slow to compile: about a minute per network).
#   6. with EXTRA=1: A in bf16, and channels_last+compile / max_autotune variants.
# Knobs: RUNS (10), WARMUP (3), E2E_RUNS (5), LONG_REPEAT (2), EXTRA (0), PYTHON (python3),
# SIZE (--full; --small for a dry run of this script on a CPU), BENCH_ARGS (added to every run,
# e.g. "--device cpu --threads 1").
set -uo pipefail
cd "$(dirname "$0")/.."

OUTDIR="${OUT:-/tmp/adcvsr-gpu-check}"
mkdir -p "$OUTDIR"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
RUNS="${RUNS:-10}"
WARMUP="${WARMUP:-3}"
E2E_RUNS="${E2E_RUNS:-5}"
LONG_REPEAT="${LONG_REPEAT:-2}"
EXTRA="${EXTRA:-0}"
SIZE="${SIZE:---full}"
read -r -a EXTRA_ARGS <<<"${BENCH_ARGS:-}"

if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm \
        --format=csv 2>/dev/null || echo "nvidia-smi: not available"
    "$PY" - <<'EOF'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0))
try:
    import av
    print("av", av.__version__)
except ImportError:
    print("av: missing (protocol C will be skipped)")
EOF
} 2>&1 | tee "$OUTDIR/env.txt"

bench() {  # bench NAME TIMEOUT ARGS...
    local name="$1" limit="$2"
    shift 2
    echo "=== $name: $*"
    timeout "$limit" "$PY" benchmarks/bench.py --runs "$RUNS" --warmup "$WARMUP" \
        --json "$OUTDIR/bench_$name.json" "$SIZE" "${EXTRA_ARGS[@]}" "$@" 2>&1 |
        tee "$OUTDIR/bench_$name.log"
    echo "=== $name: exit ${PIPESTATUS[0]}"
}

bench A 130 --protocols A --variants pipeline,eager,autocast,graphs --parity
bench B 50 --protocols B --variants pipeline,eager --no-parity
bench C 150 --protocols C --variants pipeline --e2e-runs "$E2E_RUNS" \
    --long-repeat "$LONG_REPEAT" --no-parity
bench L 50 --protocols L --no-temporal --runs 5 --warmup 1 --no-parity
bench A_compile 200 --protocols A --variants compile --no-parity --no-precision-checks
if [ "$EXTRA" = "1" ]; then
    bench A_bf16 90 --protocols A --precision bf16 --variants pipeline,eager --no-parity
    bench A_compile_more 300 --protocols A --no-temporal \
        --variants channels_last+compile,compile+max_autotune --no-parity
fi
ls -l "$OUTDIR"
