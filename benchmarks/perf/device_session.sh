#!/usr/bin/env bash
# The prepared GPU session: everything a short loan of one GPU should measure, in one command of
# under 10 minutes (docs/performance.md, "A GPU session").
#
#   make device-wheels                          # beforehand, where pip works: wheels the GPU image lacks -> .whl/
#   bash benchmarks/perf/device_session.sh      # on the GPU machine, from the repository root (carry .whl)
#
# 1. the path comparison of every method at the paper's size (256 px, 16 + 16 images per step):
#    ms per step of the original scripts' path and of the fast path, eval ms per image, FLOP rate;
# 2. a timed paper-configuration run (UAPS, NEU-Seg layout, 256 px, 16 + 16): iterations per second,
#    from which a whole `paper` profile run's time follows;
# 3. one short run of the `paper` profile through the runner on the synthetic set (UAPS, 10 %,
#    TRAIN_ITERATIONS iterations): validation, checkpoint, test and metrics.json on the GPU.
# Writes to $OUT (default results/perf_device): session.log, perf.csv, perf.md, perf.json,
# paper_run.json, metrics.json (at most 8 files, none deeper than $OUT). Each step has its own time
# limit, so a slow one costs its own result only. A dry run here, on the CPU, in about three minutes:
#   DEVICE=cpu PY=.venv/bin/python PERF_ARGS='--methods supervised --configs 64:2:2 --steps 2 --warmup 1 --no-memory' \
#     PAPER_RUN_SECONDS=5 TRAIN_ITERATIONS=2 TRAIN_ARGS='--set train.image_size=64' bash benchmarks/perf/device_session.sh
set -uo pipefail

OUT=${OUT:-results/perf_device}
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
PERF_SECONDS=${PERF_SECONDS:-270}
PAPER_RUN_SECONDS=${PAPER_RUN_SECONDS:-60}
TRAIN_ITERATIONS=${TRAIN_ITERATIONS:-500}
TRAIN_SECONDS=${TRAIN_SECONDS:-150}
PERF_ARGS=${PERF_ARGS:---methods all --configs 256:16:16 --no-memory}
TRAIN_ARGS=${TRAIN_ARGS:-}  # extra --set options of the runner step
mkdir -p "$OUT"
exec > >(tee "$OUT/session.log") 2>&1
export PYTHONUNBUFFERED=1

if [ -d .whl ] && ! "$PY" -c "import segmentation_models_pytorch, scikit_posthocs" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || { echo "device_session: installing the wheels in .whl/ failed"; exit 1; }
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi

step() {  # step NAME SECONDS COMMAND...: run with a time limit; report how it ended
    local name=$1 limit=$2 start=$SECONDS rc
    shift 2
    echo "=== $name (limit ${limit} s): $*"
    timeout "$limit" "$@"
    rc=$?
    echo "=== $name: exit $rc after $((SECONDS - start)) s$([ $rc = 124 ] && echo ' (time limit)')"
}

echo "=== machine"
date -u
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
"$PY" -c "import sys, torch, segmentation_models_pytorch as smp; print('python', sys.version.split()[0], '| torch', torch.__version__, '| smp', smp.__version__, '| cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')" \
    || { echo "device_session: torch or segmentation_models_pytorch cannot be imported (run make device-wheels and carry .whl)"; exit 1; }

# shellcheck disable=SC2086  # PERF_ARGS and TRAIN_ARGS are lists of options
step perf "$PERF_SECONDS" "$PY" -m defectseg.benchmarks.perf --device "$DEVICE" $PERF_ARGS --out "$OUT"
step paper_run "$((PAPER_RUN_SECONDS + 120))" "$PY" -m defectseg.benchmarks.perf --device "$DEVICE" \
    --paper-run "$PAPER_RUN_SECONDS" --out "$OUT"

runs=$(mktemp -d)
step train "$TRAIN_SECONDS" "$PY" run_all.py train --profile paper --dataset synthetic --ratio 0.1 --method uaps \
    --seed 0 --device "$DEVICE" --results-dir "$runs" --set train.iterations="$TRAIN_ITERATIONS" $TRAIN_ARGS
find "$runs" -name metrics.json -exec cp {} "$OUT/metrics.json" \;
[ -f "$OUT/metrics.json" ] && "$PY" -c "import json; d = json.load(open('$OUT/metrics.json')); print('train: test mIoU', d['standard']['miou'], '| it/s', d['iterations_per_second'], '| train_seconds', d['train_seconds'])"
echo "=== done: $(ls "$OUT" | tr '\n' ' ')"
