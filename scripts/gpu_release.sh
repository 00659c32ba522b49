#!/usr/bin/env bash
# Train the release recipe's gpu preset on a lent GPU and measure the GPU's speed, in ONE device
# call of at most 600 s (docs/research/release-recipe.md, "Training the release on a lent GPU").
# The pack is made beforehand on the CPU, in the checkout the device tool sends:
#     reloc release pack            # -> runs/gpu-pack/ (ignored by git; the call carries it)
# On the device machine (Python with PyTorch, no registry; $OUT: the folder that comes back):
#     bash scripts/gpu_release.sh
# Steps, each with a timeout out of the 590 s: data + training within TIME_LIMIT (400 s), the
# archive of weights and figures, benchmarks/speed.py --device cuda --quick (at most 100 s), the
# inference part with the time left (it can be run on the CPU later instead). $OUT gets
# gpu-release.tar.gz (runs/gpu-release without data or checkpoints: best weights, metrics.csv,
# config, logs), gpu-release.json, speed-cuda.json, nvidia-smi.csv and gpu-release.log.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the folder whose files come back}"
PACK=${PACK:-runs/gpu-pack}
RUN=${RUN:-runs/gpu-release}
TIME_LIMIT=${TIME_LIMIT:-400}
BUDGET=${BUDGET:-590}
started=$SECONDS
left() { echo $((BUDGET - (SECONDS - started))); }
exec > >(tee -a "$OUT/gpu-release.log") 2>&1

export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ! python3 -c "import pydantic" 2>/dev/null; then  # the image lacks it: the pack's wheels
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$PACK"/wheels/*.whl ||
        { echo "error: no pydantic and no wheels in $PACK/wheels (reloc release pack --wheels)"; exit 1; }
    export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$OUT/nvidia-smi.csv"
python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())" ||
    exit 1

echo "== data and training (limit ${TIME_LIMIT} s) at $((SECONDS - started)) s"
timeout --kill-after=5 $((TIME_LIMIT + 60)) python3 -m reloc release gpu --pack "$PACK" --out "$RUN" --time-limit "$TIME_LIMIT"
echo "training exit status $? at $((SECONDS - started)) s"
save() {
    tar -czf "$OUT/gpu-release.tar.gz" -C "$(dirname "$RUN")" --exclude=checkpoints --exclude=last \
        --exclude='data' --exclude='data-*' "$(basename "$RUN")"
    cp "$RUN/gpu-release.json" "$OUT/" 2>/dev/null
    ls -l "$OUT"
}
save

echo "== speed at $((SECONDS - started)) s"
speed=$(( $(left) - 60 < 100 ? $(left) - 60 : 100 ))
if [ "$speed" -gt 20 ]; then
    timeout --kill-after=5 "$speed" python3 benchmarks/speed.py --device cuda --quick --budget-s $((speed - 30)) \
        --out "$OUT/speed-cuda.json"
    echo "speed exit status $? at $((SECONDS - started)) s"
fi

echo "== inference part at $((SECONDS - started)) s"
if [ "$(left)" -gt 30 ]; then
    timeout --kill-after=5 $(( $(left) - 10 )) python3 -m reloc release gpu --pack "$PACK" --out "$RUN" \
        --time-limit 0 --inference
    echo "inference exit status $? at $((SECONDS - started)) s"
    save
fi
echo "== done at $((SECONDS - started)) s"
