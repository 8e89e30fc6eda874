#!/usr/bin/env bash
# Train the default model and the two leave-one-generator-out (LOGO) controls side by side
# on one GPU machine (optionally also the 4-fold cross-validation), then segment and score
# the unseen synthetic sets with every model. Everything is synthesised here from seeds,
# so the run is reproducible.
#
#   OUT=results bash scripts/train_default_model.sh
#   OUT=results INIT_FROM=model_weights/onfh-dynunet-synth-v3 LEARNING_RATE=5e-4 \
#     MODEL_ID=onfh-dynunet-synth-v4 ITER=2500 CV=0 bash scripts/train_default_model.sh
#
# Knobs (environment): ITER (iterations per model, default 1200); INIT_FROM (fine-tune the
# default model from this model folder; the LOGO controls always start from scratch) and
# LEARNING_RATE (its initial rate; default: the recipe's); MODEL_ID (default
# onfh-dynunet-synth-v3); CV=1 to train the 4 cross-validation folds too; UNI_PARTS x
# UNI_CASES one-hip cases and BI_PARTS x BI_CASES bilateral cases (8x6 and 2x6), from seeds
# UNI_SEED+i and BI_SEED+i (3000 and 3100); HEAD_DIAMETER_MM="MIN MAX" for heads of other
# sizes than the generator's 42-50 mm; SAGITTAL_PARTS (the last this many one-hip parts
# acquired sagittal, default 0); ELLIPSOID_PARTS (the first this many one-hip parts with
# ellipsoidal lesions anywhere on the upper head, --lesion-shape ellipsoid; default 0);
# COLLAPSE_MM="D0 D1 ..." (one-hip part i with heads collapsed D_i mm over the lesion,
# --collapse-mm; default none); LOGO=0 to train only the default model; WORKERS and
# THREADS per training process; DEVICE (cuda); EVAL_SETS=0 to skip the unseen sets,
# EVAL_DIV to divide their case counts (a quick trial run), EVAL_TIMEOUT (seconds a model
# may take on one set: a poor model's whole-image searches are slow; cases left are missing).
# The default model's folder (model.pt and model.json, no checkpoints) is packed into $OUT
# as soon as it is trained, in 15 MB parts (marker $WORK/MODELS_PACKED); the LOGO
# controls are scored here and only their reports come back, at the end ($WORK/DONE).
set -uo pipefail
PY=${PY:-python3}
OUT=${OUT:-/tmp/onfh-out}
WORK=${WORK:-/tmp/onfh-work}
ITER=${ITER:-1200}
INIT_FROM=${INIT_FROM:-}; LEARNING_RATE=${LEARNING_RATE:-}
MODEL_ID=${MODEL_ID:-onfh-dynunet-synth-v3}; CV=${CV:-0}
UNI_PARTS=${UNI_PARTS:-8}; UNI_CASES=${UNI_CASES:-6}
BI_PARTS=${BI_PARTS:-2}; BI_CASES=${BI_CASES:-6}
UNI_SEED=${UNI_SEED:-3000}; BI_SEED=${BI_SEED:-3100}; HEAD_DIAMETER_MM=${HEAD_DIAMETER_MM:-}
SAGITTAL_PARTS=${SAGITTAL_PARTS:-0}; ELLIPSOID_PARTS=${ELLIPSOID_PARTS:-0}; LOGO=${LOGO:-1}
# shellcheck disable=SC2206 # a list of depths: words on purpose
COLLAPSE=(${COLLAPSE_MM:-})
WORKERS=${WORKERS:-2}; THREADS=${THREADS:-2}; DEVICE=${DEVICE:-cuda}
EVAL_SETS=${EVAL_SETS:-1}; EVAL_DIV=${EVAL_DIV:-1}; EVAL_TIMEOUT=${EVAL_TIMEOUT:-120}
mkdir -p "$OUT" "$WORK"
START=$(date +%s)
log() { echo "[$(( $(date +%s) - START )) s] $*"; }
onfh() { "$PY" -m onfh "$@"; }

log "synthesising training data"
parts=()
# shellcheck disable=SC2206 # MIN MAX: two words on purpose
heads=(); [ -n "$HEAD_DIAMETER_MM" ] && heads=(--head-diameter-mm $HEAD_DIAMETER_MM)
for i in $(seq 0 $((UNI_PARTS - 1))); do
  view=(); [ "$i" -ge $((UNI_PARTS - SAGITTAL_PARTS)) ] && view=(--orientation sagittal)
  [ "$i" -lt "$ELLIPSOID_PARTS" ] && view+=(--lesion-shape ellipsoid)
  [ "$i" -lt "${#COLLAPSE[@]}" ] && view+=(--collapse-mm "${COLLAPSE[$i]}")
  onfh synth "$WORK/u$i" --cases "$UNI_CASES" --seed $((UNI_SEED + i)) --tissue-maps "${heads[@]}" "${view[@]}" \
    >"$WORK/synth_u$i.log" 2>&1 &
  parts+=("u$i=$WORK/u$i")
done
for i in $(seq 0 $((BI_PARTS - 1))); do
  onfh synth "$WORK/b$i" --cases "$BI_CASES" --seed $((BI_SEED + i)) --bilateral --tissue-maps "${heads[@]}" \
    >"$WORK/synth_b$i.log" 2>&1 &
  parts+=("b$i=$WORK/b$i")
done
wait
made=()
for part in "${parts[@]}"; do
  if [ -d "${part#*=}/labelsTr" ]; then made+=("$part"); else log "synthesis failed: ${part%%=*} (skipped)"; fi
done
"$PY" scripts/merge_datasets.py "$WORK/train" "${made[@]}" || exit 1
log "training set: $(($(wc -l <"$WORK/train/cases.csv") - 1)) scans"

sets=(unseen_default unseen_0615 unseen_111 unseen_bilateral unseen_random)
if [ "$EVAL_SETS" = 1 ]; then
  log "synthesising the unseen sets (in the background)"
  n() { local c=$(( $1 / EVAL_DIV )); echo $(( c < 1 ? 1 : c )); }
  (
    onfh synth "$WORK/unseen_default" --cases "$(n 10)" --seed 9001 &
    onfh synth "$WORK/unseen_0615" --cases "$(n 8)" --seed 9002 --spacing 0.6 0.6 1.5 --size 300 300 100 &
    onfh synth "$WORK/unseen_111" --cases "$(n 8)" --seed 9003 --spacing 1 1 1 --size 180 180 120 &
    onfh synth "$WORK/unseen_bilateral" --cases "$(n 6)" --seed 9004 --bilateral &
    onfh synth "$WORK/unseen_random" --cases "$(n 12)" --seed 9101 --contrast random &
    wait
  ) >"$WORK/synth_unseen.log" 2>&1 &
  UNSEEN=$!
fi

log "training"
train() {
  onfh train "$WORK/train" --iterations "$ITER" --workers "$WORKERS" --threads "$THREADS" \
    --device "$DEVICE" --checkpoint-every 250 "$@"
}
default_args=(--model-id "$MODEL_ID")
[ -n "$INIT_FROM" ] && default_args+=(--init-from "$INIT_FROM")
[ -n "$LEARNING_RATE" ] && default_args+=(--learning-rate "$LEARNING_RATE")
models=("$MODEL_ID")
train -o "$WORK/$MODEL_ID" --fold all "${default_args[@]}" >"$WORK/train_default.log" 2>&1 &
DEFAULT=$!
if [ "$LOGO" = 1 ]; then
  models+=(logo_random logo_spgr)
  train -o "$WORK/logo_random" --fold all --random-contrast 1.0 --model-id onfh-logo-random-only \
    >"$WORK/train_logo_random.log" 2>&1 &
  train -o "$WORK/logo_spgr" --fold all --random-contrast 0.0 --model-id onfh-logo-spgr-only \
    >"$WORK/train_logo_spgr.log" 2>&1 &
fi
if [ "$CV" = 1 ]; then
  train -o "$WORK/cv" --fold 0 >"$WORK/train_cv0.log" 2>&1 &
  for _ in $(seq 120); do [ -f "$WORK/cv/crossval/crossval.json" ] && break; sleep 1; done
  for k in 1 2 3; do
    train -o "$WORK/cv" --fold "$k" --resume >"$WORK/train_cv$k.log" 2>&1 &
  done
fi
wait "$DEFAULT"
log "default model trained; packing it"
(cd "$WORK" && tar czf - --exclude='checkpoint*' --exclude='*.onnx' "$MODEL_ID" |
  split -b 15m - "$OUT/$MODEL_ID.tgz.part-")
touch "$WORK/MODELS_PACKED"
[ -n "${UNSEEN:-}" ] && { wait "$UNSEEN"; log "unseen sets ready"; }
wait
log "training done"
nvidia-smi --query-gpu=name,memory.used --format=csv 2>/dev/null || true

log "evaluating"
[ "$CV" = 1 ] && onfh evaluate --crossval "$WORK/cv" --by laterality --by orientation >"$WORK/evaluate_cv.txt" 2>&1
if [ "$EVAL_SETS" = 1 ]; then
  for model in "${models[@]}"; do
    for set in "${sets[@]}"; do
      (
        ONFH_NUM_THREADS=1 timeout "$EVAL_TIMEOUT" "$PY" -m onfh segment "$WORK/$set"/imagesTr/*.nii.gz -o "$WORK/pred/$model/$set" \
          --model "$WORK/$model" --no-interval --progress none >"$WORK/pred_${model}_$set.log" 2>&1
        onfh evaluate --pred "$WORK/pred/$model/$set" --truth "$WORK/$set" \
          -o "$WORK/eval/$model/$set" --by laterality --by orientation >"$WORK/eval_${model}_$set.txt" 2>&1
      ) &
    done
  done
  wait
fi
log "packing the results"
cd "$WORK" || exit 1
tar czf "$OUT/results.tgz" --exclude='*.seg.nrrd' --exclude='*.pt' --exclude='*.onnx' --exclude='checkpoint*' \
  ./*.log ./*.txt train/cases.csv train/dataset.json logo_random logo_spgr pred eval \
  unseen_*/cases.csv unseen_*/dataset.json $([ "$CV" = 1 ] && echo cv/crossval) 2>/dev/null
ls -la "$OUT"
log "done"
touch "$WORK/DONE"
