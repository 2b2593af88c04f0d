#!/usr/bin/env bash
# Memory follows the work (issue 22): the peak resident memory (/usr/bin/time -v) of each
# layer-streamed stage on a parent, next to the parent's size as f32.
#
#   scripts/memory_follows_the_work.sh llama8b WORK   # a random Llama-3.1-8B-shaped parent (bf16,
#                                                     # 16 GB), layers 30-31 of the paper space
#   scripts/memory_follows_the_work.sh smollm2 WORK   # SmolLM2-135M (../shared/data), every layer
#
# Runs `library build` at two token budgets four times apart (the peak must not grow: the
# activations go to disk), `score`, `assemble` of a child that changes the built layers, and
# `export` of that child; for SmolLM2 also `profile` on this CPU and `search --measure` (the
# closed loop, which times the chosen child against the parent: both whole models; an 8B profile
# builds stacks of the parent's depth, ~30 GiB, and is not run); prints one line per command. The parents as f32: Llama-3.1-8B 8.03 B
# parameters, 29.9 GiB; SmolLM2-135M 134.5 M, 0.50 GiB. Needs WikiText-2 from ../shared/data (the
# 8B parent reads it through SmolLM2's tokenizer: random weights, real token ids). Disk: the 8B
# case writes the parent (16 GB), two libraries (about 9 GB each in f32), the child (16 GB, bf16)
# and its GGUF (8.6 GB, q8_0); each is removed when the next step no longer needs it. Takes
# about 30 minutes (8B) or 15 minutes (SmolLM2) on 2 cores.
set -euo pipefail
case_name=${1:?usage: $0 llama8b|smollm2 WORK}
work=${2:?usage: $0 llama8b|smollm2 WORK}
repo=$(cd "$(dirname "$0")/.." && pwd)
data=${TESSERA_SHARED_DATA:-$repo/../shared/data}
tessera=$repo/target/release/tessera
[ -x "$tessera" ] || (cd "$repo" && cargo build --release)
mkdir -p "$work"
smollm2=$data/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
valid=$data/text/wikitext-2/valid.txt
test_text=$data/text/wikitext-2/test.txt

# Runs a command under /usr/bin/time -v; prints its label, wall time and peak.
measure() {
    local label=$1 log=$work/$1.err
    shift
    if ! /usr/bin/time -v "$@" --json > "$work/$label.json" 2> "$log"; then
        echo "$label: FAILED (see $log)" >&2
        tail -5 "$log" >&2
        exit 1
    fi
    local peak wall
    peak=$(awk -F': ' '/Maximum resident set size/ {printf "%.2f GiB", $2 / 1048576}' "$log")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
    echo "$label: peak $peak, wall $wall"
}

case $case_name in
llama8b)
    parent=$work/llama8b
    [ -d "$parent" ] || measure random "$tessera" model random --config "$repo/configs/llama-3.1-8b.json" \
        --dtype bf16 --out "$parent"
    build=(--space "$repo/search_spaces/paper.toml" --layers 30-31 --seq-len 64 --batch-windows 2
        --held-out-windows 2 --calibration-tokens 256 --workers 1 --tokenizer "$smollm2")
    budgets=(256 1024)
    score=(--layers 30-31 --windows 4 --tokenizer "$smollm2")
    child_dtype=bf16
    export=(--format gguf --dtype q8_0)
    exported=$work/child.gguf
    ;;
smollm2)
    parent=$smollm2
    build=(--space "$repo/search_spaces/smollm2.toml" --seq-len 64 --held-out-windows 8 --calibration-tokens 1024)
    budgets=(1024 4096)
    score=(--windows 8)
    child_dtype=f32
    export=(--format decilm --dtype bf16)
    exported=$work/child-decilm
    timed=yes
    ;;
*)
    echo "unknown case $case_name (llama8b or smollm2)" >&2
    exit 2
    ;;
esac

for tokens in "${budgets[@]}"; do
    rm -rf "$work/lib-$tokens"
    measure "build-$tokens" "$tessera" library build --parent "$parent" --data "$valid" --tokens "$tokens" \
        --checkpoint-every 0 --out "$work/lib-$tokens" "${build[@]}"
done
library=$work/lib-${budgets[1]}
rm -rf "$work/lib-${budgets[0]}"
measure score "$tessera" score --library "$library" --data "$test_text" "${score[@]}"
if [ "${timed:-}" = yes ]; then
    # The scenarios constraints/cpu-1.5x.toml needs (a request of 128 + 128 tokens).
    measure profile "$tessera" profile --library "$library" --scenario prefill:b=1,s=128 \
        --scenario decode:b=1,c=192 --repeats 5 --calibrate 0
    measure search "$tessera" search --library "$library" --constraints "$repo/constraints/cpu-1.5x.toml" \
        --measure 10 --re-solves 0
fi

# The child: per built layer the block of lowest KL that keeps attention (the parent's own
# elsewhere), written as a solutions file.
python3 - "$work/score.json" "$library" "$work/solutions.json" << 'EOF'
import json, sys
scores, library, out = sys.argv[1:]
manifest = json.load(open(f"{library}/manifest.json"))
config = manifest["parent"]["config"]
own = {}
for key, record in manifest["items"].items():
    if record["origin"] == "parent":
        layer, name = key.split("/")
        own.setdefault(layer, []).append(name)
best = {}
for row in sorted(json.load(open(scores))["blocks"], key=lambda r: r["kl_div"]):
    layer = f"layer_{row['span']['first']}"
    if row["kl_div"] > 0 and "attn_noop" not in row["variant"] and layer not in best:
        best[layer] = row["variant"]
choice = {layer: " + ".join(sorted(names, key=lambda n: not n.startswith(("kv", "attn")))) for layer, names in own.items()}
choice.update(best)
solution = {"method": "lowest KL per built layer", "objective": 0.0, "totals": {}, "choice": choice,
            "status": "heuristic", "solve_ms": 0.0, "batch_size": 1}
report = {"objective": {"key": "metrics.kl_div", "maximize": False}, "limits": [], "solutions": [solution],
          "baselines": [], "baselines_without": [], "measured": None, "closed_loop": [], "chosen_round": None}
json.dump(report, open(out, "w"), indent=1)
print("child:", best)
EOF
rm -rf "$work/child"
measure assemble "$tessera" assemble --library "$library" --solution "$work/solutions.json" --out "$work/child" \
    --dtype "$child_dtype"
rm -rf "$exported"
measure export "$tessera" export --model "$work/child" --out "$exported" "${export[@]}"
rm -rf "$work/child" "$exported"
