#!/usr/bin/env bash
# A heterogeneous child of SmolLM2 written by tessera as llama.cpp `deci` GGUF (f32 and q8_0),
# run by llama.cpp on the 512 WikiText-2 ids of the SmolLM2 reference (outside CI).
#
#   SMOLLM2_REFERENCE=/work/pyref/out/smollm2 PYREF=/work/pyref scripts/gguf_child_crosscheck.sh [OUT]
#
# SMOLLM2_REFERENCE: the output folder of scripts/smollm2_reference.py (nll.json holds the ids).
# PYREF: llama.cpp built from the llama-cpp-python sdist and its venv (see scripts/make_fixtures.py).
# The child is built and written by the ignored test `smollm2_child_as_deci_for_llama_cpp`
# (tests/gguf_model.rs), which prints tessera's mean NLL of the child in memory and of each file
# read back; scripts/llamacpp_crosscheck.py then prints llama.cpp's mean NLL and greedy tokens
# (and numpy's exact figure for the f32 file).
set -euo pipefail
out=${1:-/tmp/tessera-gguf-child}
: "${SMOLLM2_REFERENCE:?set SMOLLM2_REFERENCE to the scripts/smollm2_reference.py output folder}"
pyref=${PYREF:-/work/pyref}
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
GGUF_CHILD_OUT="$out" cargo test --test gguf_model smollm2_child_as_deci_for_llama_cpp -- --ignored --nocapture 2>&1 |
    grep -E '^child|tessera mean NLL'
"$pyref/venv5/bin/python" scripts/llamacpp_crosscheck.py "$out/child-f32.gguf" "$out/ids.txt" | tail -1
"$pyref/venv5/bin/python" scripts/llamacpp_crosscheck.py "$out/child-q8_0.gguf" "$out/ids.txt" --no-numpy | tail -1
