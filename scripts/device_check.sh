#!/usr/bin/env bash
# The GPU path, checked on a machine with a GPU (outside CI): from a tessera binary built with
# `--features wgpu` (cargo build --release --features wgpu), the forward benchmark and the block
# profile of SmolLM2 measured on the GPU through Vulkan, each next to the roofline's prediction
# for that GPU (f32, as burn computes). Builds nothing; a few minutes.
#
#   scripts/device_check.sh BINARY [MODEL]
#   DEVICE=cpu TARGET=h100 scripts/device_check.sh target/release/tessera   # another device / GPU
#
# MODEL defaults to SmolLM2-135M-Instruct's GGUF in ../shared/data; any checkpoint tessera reads
# will do (timings do not depend on the values: `tessera model random` makes one of any shape).
# The profile needs a block library: a tiny one (layers 0-1, a few hundred BLD tokens, on the
# CPU) is built first into a scratch directory.
set -euo pipefail

usage="usage: [DEVICE=wgpu] [TARGET=h200] scripts/device_check.sh BINARY [MODEL]"
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${1:?$usage}")
model=$(realpath "${2:-$root/../shared/data/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf}")
device=${DEVICE:-wgpu}
target=${TARGET:-h200}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
scenarios=(--scenario prefill:b=1,s=128 --scenario decode:b=1,c=160)
started=$SECONDS
step() { echo "device_check: $* ($((SECONDS - started)) s)" >&2; }

step "$("$bin" --version) on $device, roofline $target, model $model"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >&2

step "bench forward: prompt 128, 64 decoded tokens, batch 1"
"$bin" --device "$device" bench forward --model "$model" --prompt-len 128 --decode-tokens 64 --json >"$work/forward.json"

step "library of layers 0-1 (CPU, setup only)"
cat >"$work/space.toml" <<'EOF'
description = "device check: fewer KV heads, a narrower FFN, linear and no-op sub-blocks"
[all]
attention = ["kv/1", "kv=1", "linear", "no_op"]
ffn = [1.0, 0.5, "linear", "no_op"]
EOF
"$bin" --device cpu library build --parent "$model" --space "$work/space.toml" --data parent-samples:8 \
    --tokens 256 --held-out-windows 2 --layers 0-1 --out "$work/lib" --json >/dev/null

step "profile, measured on $device"
"$bin" --device "$device" profile --library "$work/lib" --target cpu "${scenarios[@]}" --layers 0-1 \
    --repeats 5 --json >"$work/measured.json"
step "profile, roofline of $target"
"$bin" profile --library "$work/lib" --target "$target" --dtype f32 "${scenarios[@]}" --layers 0-1 \
    --json >"$work/roofline.json"

python3 - "$work" "$device" "$target" <<'EOF'
import json, sys
work, device, target = sys.argv[1:]
load = lambda name: json.load(open(f"{work}/{name}.json"))
forward, measured, roofline = load("forward"), load("measured"), load("roofline")
model = forward["models"][0]["result"]
print(f"\n{device}: f32 GEMM peak {forward['gemm_peak_gflops']:.0f} GFLOP/s, read bandwidth {forward['read_bandwidth_gbs']:.0f} GB/s")
print(f"forward, {model['params'] / 1e6:.1f}M parameters: prefill {model['prefill_tokens_per_s']:.0f} tok/s "
      f"({model['prefill_gflops']:.0f} GFLOP/s), decode {model['decode_tokens_per_s']:.1f} tok/s "
      f"({model['decode_gflops']:.1f} GFLOP/s, {model['decode_weight_gbs']:.1f} GB/s of f32 weights)")
# The whole model as the profile adds it up: every layer's parent block (the space's largest,
# first of layer 0) plus what lies outside the blocks.
layers = len({r["span"]["first"] for r in roofline["rows"]}) and None
print(f"\nblocks of layers 0-1, ms: measured on {device} | roofline {target} f32 | measured / roofline")
names = [str(s) for s in measured["scenarios"]]
print(f"{'layer':<6}{'block':<28}" + "".join(f"{n:>40}" for n in names))
predicted = {(r["span"]["first"], r["block"]): r["runtime_ms"] for r in roofline["rows"]}
for r in measured["rows"]:
    p = predicted[(r["span"]["first"], r["block"])]
    cells = "".join(f"{m:>14.4f} {q:>12.4f} {m / q if q else float('nan'):>11.1f}x" for m, q in zip(r["runtime_ms"], p))
    print(f"{r['span']['first']:<6}{r['block']:<28}{cells}")
for name, m, q in zip(names, measured["latency"], roofline["latency"]):
    print(f"outside the blocks, {name}: measured {m['outside_ms']:.4f} ms, roofline {q['outside_ms']:.4f} ms")
EOF
step "done"
