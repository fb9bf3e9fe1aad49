#!/usr/bin/env bash
# The fine-tuned real LaMP-7 experiment (offline preset: SmolLM2-135M-Instruct + MiniLM).
#
# Data: the real LaMP-7 user-based dev set (1,500 questions, one user each), split by users 2:1
# (`lamp train --train-users 0.67`: 1,005 training users, 495 held-out users), the same split as
# leaderboard/lamp7-real. The held-out users are copied from the first training folder into
# $WORK/lamp7-user-heldout, and every row is scored on the same held-out users from there.
#
# Rows:
#   (a) none, fine-tuned: the generator is fine-tuned on the plain inputs (the LaMP paper's
#       fine-tuned non-personalized baseline);
#   (b) IPA, BM25, k=1, fine-tuned: the generator is fine-tuned on the IPA prompts;
#   (c) PPlug with its official defaults: PPlug's modules train, the generator stays frozen;
#   zero-shot none and IPA (BM25, k=1) for reference.
#
# Usage:
#   bash leaderboard/lamp7-finetuned/run.sh            every step in order, then results.md
#   bash leaderboard/lamp7-finetuned/run.sh STEP...    only these steps, e.g. to run two lanes at
#                                                      once on a 2-core machine
# Steps: train-none train-ipa train-pplug eval-zs-none eval-zs-ipa eval-none eval-ipa eval-pplug
# results. An eval step of a fine-tuned row waits for its training to finish. Finished cells and
# finished trainings are skipped, and an interrupted training resumes from its last checkpoint.
#
# Size: the defaults are what ran on the 2-core CPU machine (see README.md): all 1,005 training
# users, 1 epoch of 126 steps of 8 for (a) and (b), PPlug capped at the same 126 steps of 8 drawn
# from its augmented training set, greedy decoding, all 495 held-out users. The papers' size
# (for a GPU):
#   EPOCHS=2 GRAD_ACCUM=8 PPLUG_LR=1e-4 PPLUG_MAX_STEPS= BEAMS=4 DEVICE=cuda \
#     OUT=runs/lamp7-finetuned bash leaderboard/lamp7-finetuned/run.sh
# (PPlug's official epochs over its whole augmented set, effective batch 64, lr 1e-4, 4 beams.)
# Set OUT to another folder to keep the committed cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA:-../shared/lamp-data/LaMP-7/user}
TRAIN_LIMIT=${TRAIN_LIMIT-}       # training users (first N of the 1,005); empty: all
EVAL_LIMIT=${EVAL_LIMIT-}         # held-out users (first N of the 495); empty: all
EPOCHS=${EPOCHS:-1}
BATCH=${BATCH:-8}
GRAD_ACCUM=${GRAD_ACCUM:-1}
LR=${LR:-1e-4}                    # generator fine-tuning, rows (a) and (b)
PPLUG_LR=${PPLUG_LR:-1e-3}        # PPlug's modules, row (c): raised from the paper's 1e-4 for few steps
PPLUG_MAX_STEPS=${PPLUG_MAX_STEPS-126}  # = (a)'s and (b)'s steps; empty: PPlug's official epochs
BEAMS=${BEAMS:-1}
GEN_BATCH=${GEN_BATCH:-16}
DEVICE=${DEVICE:-cpu}
WORK=${WORK:-${LAMP_HOME:-$HOME/.cache/lamp-harness}/lamp7-finetuned}  # checkpoints, held-out files
OUT=${OUT:-leaderboard/lamp7-finetuned/runs}
RESULTS=${RESULTS:-leaderboard/lamp7-finetuned/results.md}
HELD="$WORK/lamp7-user-heldout"

limit() { [ -n "$1" ] && echo "--limit $1" || true; }

train() {
  local name=$1 lr=$2; shift 2
  # shellcheck disable=SC2046
  /usr/bin/time -f "$name: training wall %e s" lamp train --task lamp-7 --data-dir "$DATA" --split dev \
    --train-users 0.67 $(limit "$TRAIN_LIMIT") --eval-split none --epochs "$EPOCHS" --lr "$lr" \
    --batch-size "$BATCH" --grad-accum "$GRAD_ACCUM" --save-every 16 --preset offline --device "$DEVICE" \
    --generator-arg num_beams="$BEAMS" --out "$WORK/$name" --quiet "$@"
  held
}

held() {  # the held-out users: every training run writes the same split before its first step
  local found
  until found=$(ls "$WORK"/*/heldout-users/dev_questions.json 2>/dev/null | head -1) && [ -n "$found" ]; do
    sleep 10
  done
  [ -s "$HELD/dev_questions.json" ] || { mkdir -p "$HELD" && cp "$(dirname "$found")"/dev_*.json "$HELD/"; }
}

trained() {  # wait until (another lane's) training $1 has finished
  until grep -qs '"finished": true' "$WORK/$1/latest.json"; do sleep 30; done
  held
}

run() {
  local name=$1; shift
  # shellcheck disable=SC2046
  /usr/bin/time -f "$name: evaluation wall %e s" lamp run --task lamp-7 --data-dir "$HELD" --split dev \
    $(limit "$EVAL_LIMIT") --preset offline --device "$DEVICE" --num-beams "$BEAMS" --batch-size "$GEN_BATCH" \
    --out "$OUT" --quiet "$@"
}

step() {
  case $1 in
    train-none)   train none-ft "$LR" --personalizer none ;;
    train-ipa)    train ipa-ft "$LR" --personalizer ipa --retriever bm25 --k 1 ;;
    # shellcheck disable=SC2046
    train-pplug)  train pplug "$PPLUG_LR" --personalizer pplug \
                    $([ -n "$PPLUG_MAX_STEPS" ] && echo --max-steps "$PPLUG_MAX_STEPS") ;;
    eval-zs-none) held; run "$1" --personalizer none ;;
    eval-zs-ipa)  held; run "$1" --personalizer ipa --retriever bm25 --k 1 ;;
    eval-none)    trained none-ft; run "$1" --personalizer none --checkpoint "$WORK/none-ft" ;;
    eval-ipa)     trained ipa-ft; run "$1" --personalizer ipa --retriever bm25 --k 1 --checkpoint "$WORK/ipa-ft" ;;
    eval-pplug)   trained pplug; run "$1" --personalizer pplug --checkpoint "$WORK/pplug" ;;
    results)
      lamp leaderboard "$OUT" --baseline "none (fine-tuned) / smollm2-135m-instruct" --correction holm \
        --seed 0 --ci --reference lamp-user --out "$RESULTS" ;;
    *) echo "run.sh: unknown step '$1'. Steps: train-none train-ipa train-pplug eval-zs-none" \
         "eval-zs-ipa eval-none eval-ipa eval-pplug results" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- train-none train-ipa train-pplug eval-zs-none eval-zs-ipa eval-none eval-ipa eval-pplug results
fi
for s in "$@"; do step "$s"; done
