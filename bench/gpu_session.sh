#!/usr/bin/env bash
# One GPU session's measurements, run from the repo root on a CUDA machine (about 8 minutes on an H200):
#   1. Text2Video-Zero on the toy world: the ablation and the lambda / Delta t / T sweeps (bench/toy_text2video_zero.py),
#      alongside 2. the toy VDM's training continued from data/toy_vdm for a fixed wall-clock budget (batch 64);
#   3. then, alone on the machine, our full-size U-Nets against diffusers' with random fp16 weights (bench/unet_forward.py).
# Everything lands in $OUT: run.log, toy_t2vz.json, vdm.safetensors, text_encoder.safetensors.
# SMOKE=1 runs the same commands at toy sizes on the CPU (a check of the script, minutes).
set -u
OUT=${OUT:-/tmp/gpu_session}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY=${PY:-python3}
if [ "${SMOKE:-0}" = 1 ]; then
  DEVICE=cpu PROMPTS=1 T2VZ_ROWS=("independent frames" both) T2VZ_FLAGS=--no-sweeps VDM_MINUTES=0.1 VDM_BATCH=2 VDM_CLIPS=40
  UNET_RUNS=""
else
  DEVICE=cuda PROMPTS=${PROMPTS:-100} T2VZ_ROWS=(all) T2VZ_FLAGS="" VDM_MINUTES=${VDM_MINUTES:-3.5} VDM_BATCH=64 VDM_CLIPS=20000
  UNET_RUNS="sd15:2:1 modelscope:1:16"
fi
log() { echo "== $(date +%T) $*" | tee -a "$OUT/run.log"; }
{ nvidia-smi -L 2>/dev/null; $PY -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"; } 2>&1 | tee -a "$OUT/run.log"

log "toy VDM: training continued for $VDM_MINUTES min (background)"
rm -rf /tmp/gpu_vdm /tmp/gpu_vdm_ck
timeout $(python3 -c "print(int(60 * $VDM_MINUTES + 150))") $PY -m minivdm train-vdm --out /tmp/gpu_vdm \
  --continue-from data/toy_vdm --device $DEVICE --batch-size $VDM_BATCH --max-minutes $VDM_MINUTES \
  --dataset-size $VDM_CLIPS --steps 1000000 --checkpoint-dir /tmp/gpu_vdm_ck --seed 4 \
  --temporal-text-modulation --high-noise-fraction 0.5 --high-noise-band 0.85 1.0 \
  --temporal-lr-factor 10 --text-lr-factor 10 --word-lr-factor 10 > "$OUT/train_vdm.txt" 2>&1 &
TRAIN=$!

log "Text2Video-Zero on the toy world ($PROMPTS prompts x 4 directions)"
timeout 330 $PY bench/toy_text2video_zero.py --prompts $PROMPTS --device $DEVICE --batch-size 400 \
  --rows "${T2VZ_ROWS[@]}" $T2VZ_FLAGS --out "$OUT/toy_t2vz.json" 2>&1 | grep -v "Loading weights" | tee -a "$OUT/run.log"

wait $TRAIN; log "toy VDM training ended with status $?"
tr '\r' '\n' < "$OUT/train_vdm.txt" | grep -v "^train: " | tail -20 | tee -a "$OUT/run.log"
tr '\r' '\n' < "$OUT/train_vdm.txt" | grep "^train: " | tail -3 | tee -a "$OUT/run.log"
rm -f "$OUT/train_vdm.txt"
cp /tmp/gpu_vdm/vdm.safetensors "$OUT/" 2>/dev/null && cp /tmp/gpu_vdm/text_encoder/model.safetensors "$OUT/text_encoder.safetensors"

for run in $UNET_RUNS; do
  IFS=: read -r config batch frames <<< "$run"
  log "U-Net forward, $config, fp16, batch $batch, $frames frames"
  timeout 200 $PY bench/unet_forward.py --config "$config" --device cuda --dtype fp16 --batch "$batch" \
    --frames "$frames" --repeats 10 2>&1 | tee -a "$OUT/run.log"
done
log done
