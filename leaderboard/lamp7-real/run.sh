#!/usr/bin/env bash
# The real LaMP-7 experiment on CPU with the offline preset (SmolLM2-135M-Instruct + MiniLM).
#
# Data: the real LaMP-7 user-based dev set (1,500 questions, one user each), split by users 2:1
# (`lamp train --train-users 0.67`: 1,005 training users, 495 held-out users). Every row is scored
# on the same held-out users: `lamp train` writes them as official files into
# $WORK/pplug/heldout-users, and every `lamp run` below reads that folder.
#
# Rows: none; IPA with BM25 k=1; IPA with Contriever (MiniLM) k=1; PPlug; PPlug + retrieval;
# PPlug ablations (plain mean, no instruction embedding, top-4 selection). none/IPA are zero-shot
# (the generator is not fine-tuned); the PPlug rows train only PPlug's modules (frozen LLM).
#
# Size: the defaults are sized for one core of a shared 2-core machine (a PPlug step of 8 examples
# through SmolLM2 takes ~40 s there), so PPlug sees only TRAIN_LIMIT=64 training questions with a
# raised learning rate (LR=1e-3; the paper uses 1e-4 over far more steps). Full size:
# TRAIN_LIMIT=1005 EVAL_LIMIT=495 EPOCHS=2 LR=1e-4 (hours on CPU; minutes on a GPU).
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${DATA-}                      # the folder with LaMP-7's user-based dev_questions.json and dev_outputs.json (training steps)
TRAIN_LIMIT=${TRAIN_LIMIT:-64}
EVAL_LIMIT=${EVAL_LIMIT:-100}
EPOCHS=${EPOCHS:-1}
LR=${LR:-1e-3}
BEAMS=${BEAMS:-1}
WORK=${WORK:-${LAMP_HOME:-$HOME/.cache/lamp-harness}/lamp7-real}   # checkpoints + held-out files (outside the repo)
OUT=${OUT:-leaderboard/lamp7-real/runs}

train() {
  : "${DATA:?set DATA to the folder of the LaMP-7 user-based dev_questions.json and dev_outputs.json}"
  local name=$1; shift
  /usr/bin/time -f "$name: training wall %e s" lamp train --task lamp-7 --data-dir "$DATA" --split dev \
    --train-users 0.67 --limit "$TRAIN_LIMIT" --eval-limit "$EVAL_LIMIT" --eval-split none \
    --epochs "$EPOCHS" --lr "$LR" --batch-size 8 --save-every 10 --preset offline --device cpu \
    --generator-arg num_beams="$BEAMS" --out "$WORK/$name" --quiet "$@"
}

train pplug --personalizer pplug
train pplug-mean --personalizer pplug --personalizer-arg aggregation=mean
train pplug-noinst --personalizer pplug --personalizer-arg instruction=false
train pplug-top4 --personalizer pplug --personalizer-arg history_top_k=4
train pplug-retrieval --personalizer pplug+retrieval

HELD="$WORK/pplug/heldout-users"
RUN=(lamp run --task lamp-7 --data-dir "$HELD" --split dev --limit "$EVAL_LIMIT" --preset offline
     --device cpu --num-beams "$BEAMS" --out "$OUT" --quiet)
"${RUN[@]}" --personalizer none
"${RUN[@]}" --personalizer ipa --retriever bm25,contriever --k 1
"${RUN[@]}" --personalizer pplug --checkpoint "$WORK/pplug"
"${RUN[@]}" --personalizer pplug --personalizer-arg aggregation=mean --checkpoint "$WORK/pplug-mean"
"${RUN[@]}" --personalizer pplug --personalizer-arg instruction=false --checkpoint "$WORK/pplug-noinst"
"${RUN[@]}" --personalizer pplug --personalizer-arg history_top_k=4 --checkpoint "$WORK/pplug-top4"
"${RUN[@]}" --personalizer pplug+retrieval --checkpoint "$WORK/pplug-retrieval"

lamp leaderboard "$OUT" --baseline none --ci --by profile-size --out leaderboard/lamp7-real/results.md
echo "wrote leaderboard/lamp7-real/results.md"
