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
#   (c) PPlug, capped augmented run: PPlug's modules train (the generator stays frozen) at lr 1e-3
#       for (a)'s 126 steps of 8, drawn from PPlug's official augmented training set (11 copies
#       per user): 1,008 draws, 9% of one epoch of it, reaching 652 of the 1,005 users;
#   (d) PPlug at (a)'s and (b)'s budget: PPlug's modules train with every setting of (a) and (b)
#       (1 epoch over the 1,005 users, so each user once; no augmentation, `augment=0`; 126 steps
#       of 8; lr = LR, 1e-4, also the PPlug paper's; same optimizer, warmup, clipping, seed);
#   zero-shot none and IPA (BM25, k=1) for reference.
#
# Usage:
#   bash leaderboard/lamp7-finetuned/run.sh            every step in order, then results.md
#   bash leaderboard/lamp7-finetuned/run.sh STEP...    only these steps, e.g. to run two lanes at
#                                                      once on a 2-core machine
# Steps: train-none train-ipa train-pplug train-pplug-epoch eval-zs-none eval-zs-ipa eval-none
# eval-ipa eval-pplug eval-pplug-epoch results (and logs: copy the trainings' records, below). An eval step of a fine-tuned row waits for its training to finish. Finished cells and
# finished trainings are skipped, and an interrupted training resumes from its last checkpoint.
# A finished training's record (its config.json and the losses of every step, state.json) is
# copied to $LOGS/<training>/ (default: trainings/ beside $OUT), without the weights.
#
# Size: the defaults are what ran on the 2-core CPU machine (see README.md): all 1,005 training
# users, 1 epoch of 126 steps of 8 for (a), (b) and (d), PPlug (c) capped at the same 126 steps of
# 8 drawn from its augmented training set, greedy decoding, all 495 held-out users. The papers'
# recipes (for a GPU):
#   EPOCHS=10 LR=5e-5 BATCH=16 PPLUG_EPOCHS= PPLUG_GRAD_ACCUM=4 PPLUG_LR=1e-4 PPLUG_MAX_STEPS= \
#     BEAMS=4 DEVICE=cuda OUT=runs/lamp7-finetuned bash leaderboard/lamp7-finetuned/run.sh
# (a), (b): the LaMP paper's fine-tuning, 10 epochs, lr 5e-5, batch 16; (c): PPlug's official
# training, its epochs (2; LaMP-3 1) over its whole augmented set, batch 16 x 4 = 64, lr 1e-4;
# (d): PPlug at (a)'s budget, 10 epochs at lr 5e-5, batch 16, no augmentation; 4 beams.
# Set OUT to another folder to keep the committed cells.
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA-}                      # the folder with LaMP-7's user-based dev_questions.json and dev_outputs.json (training steps)
TRAIN_LIMIT=${TRAIN_LIMIT-}       # training users (first N of the 1,005); empty: all
EVAL_LIMIT=${EVAL_LIMIT-}         # held-out users (first N of the 495); empty: all
EPOCHS=${EPOCHS:-1}
BATCH=${BATCH:-8}
GRAD_ACCUM=${GRAD_ACCUM:-1}
LR=${LR:-1e-4}                    # generator fine-tuning, rows (a) and (b)
PPLUG_LR=${PPLUG_LR:-1e-3}        # PPlug's modules, row (c): raised from the paper's 1e-4 for few steps
PPLUG_MAX_STEPS=${PPLUG_MAX_STEPS-126}  # = (a)'s and (b)'s steps; empty: PPlug's official epochs
PPLUG_EPOCHS=${PPLUG_EPOCHS-$EPOCHS}  # row (c); empty: PPlug's official epochs
PPLUG_GRAD_ACCUM=${PPLUG_GRAD_ACCUM:-$GRAD_ACCUM}  # row (c)
PPLUG_EPOCH_LR=${PPLUG_EPOCH_LR:-$LR}  # row (d), PPlug at (a)'s and (b)'s budget: their lr (1e-4, PPlug's too)
BEAMS=${BEAMS:-1}
GEN_BATCH=${GEN_BATCH:-16}
DEVICE=${DEVICE:-cpu}
WORK=${WORK:-${LAMP_HOME:-$HOME/.cache/lamp-harness}/lamp7-finetuned}  # checkpoints, held-out files
OUT=${OUT:-leaderboard/lamp7-finetuned/runs}
LOGS=${LOGS:-$(dirname "$OUT")/trainings}  # the trainings' records (config.json, state.json), not weights
RESULTS=${RESULTS:-leaderboard/lamp7-finetuned/results.md}
HELD="$WORK/lamp7-user-heldout"
WAIT_HOURS=${WAIT_HOURS:-12}      # how long an eval step waits for another lane's training
# Trainings live in a folder named by the training settings, so an eval never scores a finished
# training of other settings left in $WORK by an earlier run.
# (PPlug's own epochs and accumulation join the name only when they differ from (a)'s.)
PPLUG_OWN=()
[ "$PPLUG_EPOCHS" = "$EPOCHS" ] || PPLUG_OWN+=("pplug-epochs=$PPLUG_EPOCHS")
[ "$PPLUG_GRAD_ACCUM" = "$GRAD_ACCUM" ] || PPLUG_OWN+=("pplug-grad-accum=$PPLUG_GRAD_ACCUM")
SETTINGS=$(printf '%s|' "$DATA" "$TRAIN_LIMIT" "$EPOCHS" "$BATCH" "$GRAD_ACCUM" "$LR" "$PPLUG_LR" \
  "$PPLUG_MAX_STEPS" "$PPLUG_EPOCH_LR" "$BEAMS" "$DEVICE" "${PPLUG_OWN[@]}" | sha256sum | cut -c1-10)
TRAINED="$WORK/trained-$SETTINGS"

limit() { [ -n "$1" ] && echo "--limit $1" || true; }

train() {
  : "${DATA:?set DATA to the folder of the LaMP-7 user-based dev_questions.json and dev_outputs.json}"  # train NAME LR EPOCHS GRAD_ACCUM LAMP-TRAIN-OPTION... (EPOCHS empty: the method's official count)
  local name=$1 lr=$2 epochs=$3 accum=$4; shift 4
  mkdir -p "$TRAINED" && rm -f "$TRAINED/$name.failed"
  # shellcheck disable=SC2046
  if ! /usr/bin/time -f "$name: training wall %e s" lamp train --task lamp-7 --data-dir "$DATA" --split dev \
      --train-users 0.67 $(limit "$TRAIN_LIMIT") --eval-split none $([ -n "$epochs" ] && echo --epochs "$epochs") \
      --lr "$lr" --batch-size "$BATCH" --grad-accum "$accum" --save-every 16 --preset offline --device "$DEVICE" \
      --generator-arg num_beams="$BEAMS" --out "$TRAINED/$name" --quiet "$@"; then
    touch "$TRAINED/$name.failed"  # an eval step waiting for it stops instead of waiting on
    exit 1
  fi
  keep_log "$name"
  held
}

keep_log() {  # copy a finished training's config.json and last state.json (losses) to $LOGS/NAME
  local dir="$TRAINED/$1" checkpoint
  checkpoint=$(sed -n 's/.*"checkpoint": *"\([^"]*\)".*/\1/p' "$dir/latest.json")
  mkdir -p "$LOGS/$1"
  cp "$dir/config.json" "$LOGS/$1/config.json"
  cp "$dir/$checkpoint/state.json" "$LOGS/$1/state.json"
}

wait_for() {  # wait_for WHAT CONDITION...: until CONDITION holds, at most WAIT_HOURS
  local what=$1 waited=0; shift
  until "$@"; do
    [ "$waited" -eq 0 ] && echo "run.sh: waiting for $what" >&2
    if [ "$waited" -ge $((WAIT_HOURS * 3600)) ]; then
      echo "run.sh: gave up after $WAIT_HOURS h waiting for $what" >&2; exit 1
    fi
    sleep 20; waited=$((waited + 20))
  done
}

split_written() {  # a training has written both held-out files
  local found
  for found in "$TRAINED"/*/heldout-users; do
    [ -s "$found/dev_questions.json" ] && [ -s "$found/dev_outputs.json" ] && return 0
  done
  return 1
}

held() {  # the held-out users, copied once (whole, then moved into place) from a training folder
  [ -s "$HELD/dev_questions.json" ] && [ -s "$HELD/dev_outputs.json" ] && return
  wait_for "a training step (train-none, train-ipa or train-pplug) to write the held-out users" split_written
  local found staging
  for found in "$TRAINED"/*/heldout-users; do [ -s "$found/dev_outputs.json" ] && break; done
  staging=$(mktemp -d "$WORK/.heldout.XXXXXX")
  cp "$found"/dev_questions.json "$found"/dev_outputs.json "$staging/"
  rm -rf "$HELD" && mv "$staging" "$HELD"
}

finished() {  # training $1 finished, or failed (then this step fails too)
  if [ -e "$TRAINED/$1.failed" ]; then
    echo "run.sh: training $1 failed (see its lane's output); not evaluating it" >&2; exit 1
  fi
  grep -qs '"finished": true' "$TRAINED/$1/latest.json"
}

trained() {  # wait until (another lane's) training $1 has finished
  wait_for "training $1 ($TRAINED/$1) to finish" finished "$1"
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
    train-none)   train none-ft "$LR" "$EPOCHS" "$GRAD_ACCUM" --personalizer none ;;
    train-ipa)    train ipa-ft "$LR" "$EPOCHS" "$GRAD_ACCUM" --personalizer ipa --retriever bm25 --k 1 ;;
    # shellcheck disable=SC2046
    train-pplug)  train pplug "$PPLUG_LR" "$PPLUG_EPOCHS" "$PPLUG_GRAD_ACCUM" --personalizer pplug \
                    $([ -n "$PPLUG_MAX_STEPS" ] && echo --max-steps "$PPLUG_MAX_STEPS") ;;
    train-pplug-epoch) train pplug-epoch "$PPLUG_EPOCH_LR" "$EPOCHS" "$GRAD_ACCUM" --personalizer pplug \
                    --personalizer-arg augment=0 ;;
    eval-zs-none) held; run "$1" --personalizer none ;;
    eval-zs-ipa)  held; run "$1" --personalizer ipa --retriever bm25 --k 1 ;;
    eval-none)    trained none-ft; run "$1" --personalizer none --checkpoint "$TRAINED/none-ft" ;;
    eval-ipa)     trained ipa-ft; run "$1" --personalizer ipa --retriever bm25 --k 1 --checkpoint "$TRAINED/ipa-ft" ;;
    eval-pplug)   trained pplug; run "$1" --personalizer pplug --checkpoint "$TRAINED/pplug" ;;
    eval-pplug-epoch) trained pplug-epoch; run "$1" --personalizer pplug --checkpoint "$TRAINED/pplug-epoch" ;;
    logs)  # the records of the finished trainings of these settings
      for found in "$TRAINED"/*/latest.json; do
        if [ -e "$found" ] && finished "$(basename "$(dirname "$found")")"; then
          keep_log "$(basename "$(dirname "$found")")"
        fi
      done ;;
    results)
      lamp leaderboard "$OUT" --baseline "none (fine-tuned) / smollm2-135m-instruct" --correction holm \
        --seed 0 --ci --reference lamp-user --out "$RESULTS" ;;
    *) echo "run.sh: unknown step '$1'. Steps: train-none train-ipa train-pplug train-pplug-epoch" \
         "eval-zs-none eval-zs-ipa eval-none eval-ipa eval-pplug eval-pplug-epoch logs results" >&2; exit 2 ;;
  esac
}

if [ $# -eq 0 ]; then
  set -- train-none train-ipa train-pplug train-pplug-epoch eval-zs-none eval-zs-ipa eval-none eval-ipa \
    eval-pplug eval-pplug-epoch results
fi
for s in "$@"; do step "$s"; done
