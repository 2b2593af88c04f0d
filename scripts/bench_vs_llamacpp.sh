#!/usr/bin/env bash
# Forward speed of tessera against llama.cpp on one GGUF model, side by side (outside CI).
#
#   scripts/bench_vs_llamacpp.sh MODEL.gguf LLAMA_BENCH [ROUNDS] [THREADS]
#
# Alternates `tessera bench forward` and `llama-bench` ROUNDS times (default 5) with the same
# threads (default 2), prompt 128 and 64 generated tokens, and prints each round and the
# medians: prefill and decode tokens/s and tessera / llama.cpp. Use an F32 GGUF (tessera computes
# in f32; llama.cpp's quantised kernels also quantise activations, so a quantised file compares
# different arithmetic). llama-bench comes with llama.cpp (built from the PyPI
# `llama-cpp-python` sdist, see tests/fixtures/README.md). The machine should be quiet: run
# nothing else meanwhile.
set -euo pipefail
model=${1:?usage: bench_vs_llamacpp.sh MODEL.gguf LLAMA_BENCH [ROUNDS] [THREADS]}
llama_bench=${2:?usage: bench_vs_llamacpp.sh MODEL.gguf LLAMA_BENCH [ROUNDS] [THREADS]}
rounds=${3:-5}
threads=${4:-2}
tessera=${TESSERA:-$(dirname "$0")/../target/release/tessera}
[ -x "$tessera" ] || { echo "build tessera first: cargo build --release (or set TESSERA)" >&2; exit 1; }

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq 1 "$rounds"); do
    RAYON_NUM_THREADS=$threads "$tessera" bench forward --model "$model" --prompt-len 128 \
        --decode-tokens 64 --repeats 3 --json 2>/dev/null |
        python3 -c 'import json,sys; r=json.load(sys.stdin)["models"][0]["result"]; print("tessera", r["prefill_tokens_per_s"], r["decode_tokens_per_s"])' >>"$results"
    "$llama_bench" -m "$model" -t "$threads" -p 128 -n 64 -r 3 -o json 2>/dev/null |
        python3 -c 'import json,sys
rows = json.load(sys.stdin)
pp = [r["avg_ts"] for r in rows if r["n_prompt"] > 0][0]
tg = [r["avg_ts"] for r in rows if r["n_gen"] > 0][0]
print("llama.cpp", pp, tg)' >>"$results"
    tail -2 "$results" | sed "s/^/round $round: /"
done
python3 - "$results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
def median(name, column):
    return statistics.median(float(r[column]) for r in rows if r[0] == name)
print(f"{'':10} {'prefill tok/s':>14} {'decode tok/s':>13}   (medians of {len(rows) // 2} rounds)")
for name in ("tessera", "llama.cpp"):
    print(f"{name:10} {median(name, 1):14.1f} {median(name, 2):13.1f}")
print(f"{'ratio':10} {median('tessera', 1) / median('llama.cpp', 1):14.2f}x {median('tessera', 2) / median('llama.cpp', 2):12.2f}x")
EOF
