#!/usr/bin/env python3
"""Test vectors for tessera's GGUF container (tests/gguf_container.rs), made by an independent
implementation: the PyPI `gguf` package (gguf-py, llama.cpp's own Python library).

Run outside CI, from the repository root, in a virtual environment holding the PyPI packages
`gguf` and `numpy` (the committed vectors were made with gguf 0.19.0 and numpy 2.4.6):

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install gguf==0.19.0 numpy
    /tmp/venv/bin/python scripts/gguf_vectors.py

It writes tests/fixtures/gguf_vectors/:
- `<TYPE>.blocks` and `<TYPE>.f32`, for every type tessera dequantises: raw blocks and what
  `gguf.quants.dequantize` makes of them (little-endian f32). Blocks of the types gguf-py can
  quantise are half quantised from random floats with `gguf.quants.quantize`, half random bytes
  with finite f16 scales; K-quant blocks (gguf-py only dequantises them) are random bytes with
  finite f16 `d`/`dmin` fields; F16 and BF16 are random non-NaN bit patterns and a few special
  values; F32 random floats and specials.
- `encode_input.f32` and `<TYPE>.encoded` for F16, BF16 and Q8_0: floats and the bytes
  `gguf.quants.quantize` (numpy's `astype(float16)` for F16) makes of them.
- `smollm2.json`: the type, ggml dims and sha256 of the dequantised values (little-endian f32)
  of every tensor of SmolLM2-135M-Instruct.Q4_1.gguf, read with `gguf.GGUFReader`, when the
  model is present (../shared/data/models/smollm2-135m-instruct/).
- `vectors.json`: the list of the above, with the package versions.
"""

import hashlib
import json
import os
import sys
from importlib.metadata import version

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

OUT = "tests/fixtures/gguf_vectors"
MODEL = "../shared/data/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
VALUES = 4096  # per type: 128 blocks of 32 or 16 super-blocks of 256

rng = np.random.default_rng(20260521)


def finite_f16(n):
    """n random finite f16 scales of either sign, magnitudes 2^-14 .. 2^2 (normal f16)."""
    mag = np.exp2(rng.uniform(-14, 2, n)).astype(np.float16)
    return (mag * rng.choice([-1, 1], n)).astype(np.float16)


def random_floats(n):
    """Normal values at mixed scales, some blocks far larger or smaller than others."""
    scale = np.repeat(np.exp2(rng.uniform(-12, 8, n // 32)), 32)
    return (rng.standard_normal(n) * scale).astype(np.float32)


def blocks_with_scales(qtype, n_blocks, scale_fields):
    """Random bytes with the f16 fields at the given byte offsets set to finite scales."""
    _, type_size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, (n_blocks, type_size), dtype=np.uint8)
    for off in scale_fields:
        b[:, off : off + 2] = finite_f16(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    return b


def float_specials():
    f32 = np.float32
    return np.array(
        [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 1e-45, -1e-45, 1.17549435e-38, 3.4028235e38, 65504.0, 65520.0],
        dtype=f32,
    )


def make_blocks(qtype):
    block, type_size = gguf.GGML_QUANT_SIZES[qtype]
    n_blocks = VALUES // block
    if qtype == T.F32:
        v = random_floats(VALUES)
        v[: len(float_specials())] = float_specials()
        return v.view(np.uint8)
    if qtype in (T.F16, T.BF16):
        bits = rng.integers(0, 1 << 16, VALUES, dtype=np.uint16)
        exp_all_ones = (bits & 0x7C00) == 0x7C00 if qtype == T.F16 else (bits & 0x7F80) == 0x7F80
        is_nan = exp_all_ones & ((bits & (0x03FF if qtype == T.F16 else 0x007F)) != 0)
        bits[is_nan] &= 0x8000 | (0x03FF if qtype == T.F16 else 0x007F)  # NaN payloads are not compared
        specials = [0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0xFBFF]
        specials += [0x7C00, 0xFC00] if qtype == T.F16 else [0x7F80, 0xFF80, 0x7F7F, 0x0080]
        bits[: len(specials)] = specials
        return bits.view(np.uint8)
    scale_fields = {
        T.Q8_0: [0],
        T.Q4_0: [0],
        T.Q5_0: [0],
        T.Q4_1: [0, 2],
        T.Q5_1: [0, 2],
        T.Q4_K: [0, 2],
        T.Q5_K: [0, 2],
        T.Q6_K: [type_size - 2],
    }[qtype]
    if qtype in (T.Q4_K, T.Q5_K, T.Q6_K):
        return blocks_with_scales(qtype, n_blocks, scale_fields).reshape(-1)
    half = n_blocks // 2
    floats = random_floats(half * block)
    floats[:block] = 0.0  # an all-zero block
    quantised = quantize(floats.reshape(-1, block), qtype).reshape(half, type_size)
    random = blocks_with_scales(qtype, n_blocks - half, scale_fields)
    return np.concatenate([quantised, random]).reshape(-1)


def encode_input():
    """Floats for the writer: random, exact ties for Q8_0's rounding, tiny and huge blocks."""
    v = random_floats(VALUES)
    # A block with amax 127 (d = 1): halves must round away from zero.
    v[32:64] = np.arange(-15.5, 16.5, 1.0, dtype=np.float32)
    v[32] = 127.0
    # A block whose d underflows f16 (stored 0) and one whose d overflows f16 (stored inf).
    v[64:96] = rng.standard_normal(32).astype(np.float32) * 1e-9
    v[96:128] = rng.standard_normal(32).astype(np.float32) * 1e7
    v[128:160] = 0.0
    return v


def encode(qtype, v):
    if qtype == T.F16:
        # gguf.quants.quantize(F16) is numpy's astype(float16). tessera refuses finite values
        # beyond f16's range: those are zeroed here and in the Rust test alike.
        return np.where(np.abs(v) > 65504, np.float32(0), v).astype(np.float16).view(np.uint8)
    with np.errstate(over="ignore"):  # the block whose d overflows f16, on purpose
        return quantize(v.reshape(-1, 32), qtype).reshape(-1)


def sha256_f32(values):
    return hashlib.sha256(np.ascontiguousarray(values, dtype="<f4").tobytes()).hexdigest()


def main():
    os.makedirs(OUT, exist_ok=True)
    manifest = {"gguf": version("gguf"), "numpy": np.__version__}
    manifest["dequantize"] = []
    for qtype in (T.F32, T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q4_K, T.Q5_K, T.Q6_K):
        blocks = make_blocks(qtype)
        values = dequantize(blocks.reshape(1, -1), qtype).reshape(-1)
        assert values.size == VALUES, (qtype.name, values.size)
        blocks.tofile(f"{OUT}/{qtype.name}.blocks")
        values.astype("<f4").tofile(f"{OUT}/{qtype.name}.f32")
        manifest["dequantize"].append({"type": qtype.name, "values": VALUES, "sha256": sha256_f32(values)})

    v = encode_input()
    v.astype("<f4").tofile(f"{OUT}/encode_input.f32")
    manifest["encode"] = []
    for qtype in (T.F16, T.BF16, T.Q8_0):
        data = encode(qtype, v)
        data.tofile(f"{OUT}/{qtype.name}.encoded")
        manifest["encode"].append({"type": qtype.name, "bytes": int(data.size)})

    with open(f"{OUT}/vectors.json", "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")

    if os.path.exists(MODEL):
        reader = gguf.GGUFReader(MODEL)
        with open(MODEL, "rb") as f:
            file_sha = hashlib.sha256(f.read()).hexdigest()
        tensors = []
        for t in reader.tensors:
            values = dequantize(t.data, t.tensor_type)
            tensors.append(
                {"name": t.name, "type": t.tensor_type.name, "dims": [int(d) for d in t.shape], "sha256": sha256_f32(values)}
            )
        with open(f"{OUT}/smollm2.json", "w") as f:
            lines = ",\n".join(json.dumps(t) for t in tensors)
            f.write(f'{{"file_sha256": "{file_sha}", "tensors": [\n{lines}\n]}}\n')
    else:
        print(f"{MODEL} is absent: smollm2.json not written", file=sys.stderr)


if __name__ == "__main__":
    main()
