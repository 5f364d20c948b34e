#!/usr/bin/env bash
# One short GPU measurement pass for a lent accelerator machine (no network there, so the
# project runs under that machine's python3 with its JAX; the few packages it lacks travel as
# wheels in .whl/: docs/model.md, "On one GPU"). Prints MFU and tokens/s of the real train step at the
# d12 and d20 shapes (bf16, both recipes), where the d20 step's time goes by source line
# (benchmarks/step_profile.py), then the training loop's step-time split at d12.
# Every result is also written under $OUT (or ./gpu-out) as JSON and a log.
#
#   bash benchmarks/gpu_check.sh            # all parts, in priority order
#   GPU_CHECK_PARTS="mfu" bash benchmarks/gpu_check.sh
#   GPU_CHECK_WHEELS=0 uv run bash benchmarks/gpu_check.sh    # the project's own environment
set -u
out=${OUT:-gpu-out}
export PYTHONUNBUFFERED=1
parts=${GPU_CHECK_PARTS:-"mfu profile mfu2026 profile2026 batch32 loop parts parts2026"}
for part in $parts; do
    case $part in
    mfu | mfu2026 | profile | profile2026 | batch32 | loop | parts | parts2026 | compile) ;;
    *) echo "unknown part '$part': choose from mfu profile mfu2026 profile2026 batch32 loop" \
        "parts parts2026 compile" >&2
        exit 2 ;;
    esac
done
mkdir -p "$out"
if [ "${GPU_CHECK_WHEELS:-1}" != 0 ] && compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || {
        echo "could not install the wheels in .whl/ (built for the device's Python 3.12," \
            "x86-64); GPU_CHECK_WHEELS=0 skips them where the project's environment is active" >&2
        exit 1
    }
    export PYTHONPATH=/tmp/site:$PWD/src
else
    export PYTHONPATH=$PWD/src
fi
log="$out/gpu_check.log"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,memory.total --format=csv \
    2>&1 | tee -a "$log"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, \
'optax', optax.__version__, jax.devices())" 2>&1 | tee -a "$log"

bench=benchmarks/engine_throughput.py
for part in $parts; do
    start=$(date +%s)
    case $part in
    mfu) timeout 260 python3 $bench --configs d12,d20 --steps 10 --no-torch \
        --json "$out/mfu_2025.json" ;;
    mfu2026) timeout 260 python3 $bench --configs d12,d20 --steps 10 --no-torch \
        --recipe nanochat-2026 --json "$out/mfu_2026.json" ;;
    profile) timeout 150 python3 benchmarks/step_profile.py --configs d20 --steps 2 --top 40 \
        --json "$out/profile_2025.json" ;;
    profile2026) timeout 150 python3 benchmarks/step_profile.py --configs d20 --steps 2 --top 40 \
        --recipe nanochat-2026 --json "$out/profile_2026.json" ;;
    batch32) timeout 90 python3 $bench --configs d20 --batch 32 --steps 10 --no-torch \
        --json "$out/mfu_d20_b32.json" ;;
    loop) timeout 150 python3 $bench --configs d12 --steps 8 --no-torch --loop \
        --json "$out/loop_d12.json" ;;
    parts) timeout 130 python3 benchmarks/step_parts.py --configs d20 --reps 5 --json "$out/parts_2025.json" ;;
    parts2026) timeout 130 python3 benchmarks/step_parts.py --configs d20 --reps 5 --recipe nanochat-2026 \
        --json "$out/parts_2026.json" ;;
    compile) timeout 200 python3 $bench --compile-depths 4,16 --json "$out/compile.json" ;;
    esac 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    echo "== $part: rc $rc in $(($(date +%s) - start)) s" | tee -a "$log"
    # the first failure ends the pass (fix it, then rerun) unless GPU_CHECK_KEEP_GOING is set
    [ "$rc" = 0 ] || [ -n "${GPU_CHECK_KEEP_GOING:-}" ] || exit "$rc"
done
