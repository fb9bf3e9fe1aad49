#!/usr/bin/env bash
# The fine-tuned real LaMP-7 experiment (offline preset: SmolLM2-135M-Instruct + MiniLM).
#
# Data: the real LaMP-7 user-based dev set (1,500 questions, one user each), split by users 2:1
# (`lamp train --train-users 0.67`: 1,005 training users, 495 held-out users), the same split as
# leaderboard/lamp7-real. The held-out users are copied from the first training folder into
# $WORK/lamp7-user-heldout, and every row below is scored on the same held-out users from there.
#
# Rows:
#   (a) none, fine-tuned: the generator is fine-tuned on the plain inputs (the LaMP paper's
#       fine-tuned non-personalized baseline);
#   (b) IPA, BM25, k=1, fine-tuned: the generator is fine-tuned on the IPA prompts;
#   (c) PPlug with its official defaults: PPlug's modules train, the generator stays frozen;
#   zero-shot none and IPA (BM25, k=1) for reference.
# (a), (b) and (c) train on the same first TRAIN_LIMIT training users; every row is evaluated on
# the same first EVAL_LIMIT held-out users (empty: all 495).
#
# Size: the defaults are what ran on one contended CPU core (see README.md): 128 training users,
# 1 epoch of 16 steps of 8, generator learning rate 1e-4, PPlug's learning rate 1e-3 (raised for
# the few steps) over the same 16 steps, greedy decoding, EVAL_LIMIT=100. Full size, for a GPU
# (hours on CPU):
#   TRAIN_LIMIT= EVAL_LIMIT= EPOCHS=2 GRAD_ACCUM=8 PPLUG_LR=1e-4 PPLUG_MAX_STEPS= BEAMS=4 DEVICE=cuda \
#     OUT=runs/lamp7-finetuned bash leaderboard/lamp7-finetuned/run.sh
# (all 1,005 training users, all 495 held-out users, PPlug's official 2 epochs, effective batch 64,
# lr 1e-4 and 4 beams.) Set OUT to another folder to keep the committed cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/lamp-data/LaMP-7/user}
TRAIN_LIMIT=${TRAIN_LIMIT-128}    # training users (first N of the 1,005); empty: all
EVAL_LIMIT=${EVAL_LIMIT-100}      # held-out users (first N of the 495); empty: all
EPOCHS=${EPOCHS:-1}
BATCH=${BATCH:-8}
GRAD_ACCUM=${GRAD_ACCUM:-1}
LR=${LR:-1e-4}                    # generator fine-tuning, rows (a) and (b)
PPLUG_LR=${PPLUG_LR:-1e-3}        # PPlug's modules, row (c)
PPLUG_MAX_STEPS=${PPLUG_MAX_STEPS-16}  # PPlug's official augmentation makes ~11x the examples: same steps
BEAMS=${BEAMS:-1}
GEN_BATCH=${GEN_BATCH:-16}
DEVICE=${DEVICE:-cpu}
WORK=${WORK:-${LAMP_HOME:-$HOME/.cache/lamp-harness}/lamp7-finetuned}  # checkpoints, held-out files
OUT=${OUT:-leaderboard/lamp7-finetuned/runs}
HELD="$WORK/lamp7-user-heldout"

limit() { [ -n "$1" ] && echo "--limit $1" || true; }

train() {
  local name=$1 lr=$2; shift 2
  # shellcheck disable=SC2046
  /usr/bin/time -f "$name: training wall %e s" lamp train --task lamp-7 --data-dir "$DATA" --split dev \
    --train-users 0.67 $(limit "$TRAIN_LIMIT") --eval-split none --epochs "$EPOCHS" --lr "$lr" \
    --batch-size "$BATCH" --grad-accum "$GRAD_ACCUM" --save-every 8 --preset offline --device "$DEVICE" \
    --generator-arg num_beams="$BEAMS" --out "$WORK/$name" --quiet "$@"
}

run() {
  # shellcheck disable=SC2046
  lamp run --task lamp-7 --data-dir "$HELD" --split dev $(limit "$EVAL_LIMIT") --preset offline \
    --device "$DEVICE" --num-beams "$BEAMS" --batch-size "$GEN_BATCH" --out "$OUT" --quiet "$@"
}

train none-ft "$LR" --personalizer none
mkdir -p "$HELD" && cp "$WORK/none-ft/heldout-users/"dev_*.json "$HELD/"
train ipa-ft "$LR" --personalizer ipa --retriever bm25 --k 1
# shellcheck disable=SC2046
train pplug "$PPLUG_LR" --personalizer pplug $([ -n "$PPLUG_MAX_STEPS" ] && echo --max-steps "$PPLUG_MAX_STEPS")

run --personalizer none
run --personalizer ipa --retriever bm25 --k 1
run --personalizer none --checkpoint "$WORK/none-ft"
run --personalizer ipa --retriever bm25 --k 1 --checkpoint "$WORK/ipa-ft"
run --personalizer pplug --checkpoint "$WORK/pplug"

lamp leaderboard "$OUT" --baseline "none (fine-tuned) / smollm2-135m-instruct" --correction holm --seed 0 --ci \
  --reference lamp-user --out leaderboard/lamp7-finetuned/results.md
echo "wrote leaderboard/lamp7-finetuned/results.md"
