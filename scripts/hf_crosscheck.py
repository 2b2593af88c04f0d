"""Cross-check a tessera HF export against HF transformers (outside the test suite).

Loads DIR with transformers' LlamaForCausalLM, and prints, as JSON, the mean NLL of the ids in
IDS_FILE (one whitespace-separated sequence, evaluated as given) and whether greedy decoding
from BOS reproduces that sequence. Compare with `tessera eval nll --model DIR --ids IDS_FILE`.

    python3 -m venv .venv && .venv/bin/pip install torch transformers safetensors
    tessera export --model stories260K.bin --format hf --untie --shard-bytes 300000 --out hf/
    tessera generate --model hf/ --greedy --print-ids --max-tokens 120 > ids.txt
    .venv/bin/python scripts/hf_crosscheck.py hf/ ids.txt
"""

import json
import sys

import torch
from transformers import LlamaForCausalLM


def main(model_dir: str, ids_file: str) -> None:
    model = LlamaForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    ids = [int(x) for x in open(ids_file).read().split()]
    tokens = torch.tensor([ids])
    with torch.no_grad():
        logits = model(tokens).logits[0]
        nll = torch.nn.functional.cross_entropy(logits[:-1], tokens[0, 1:]).item()
        greedy = model.generate(tokens[:, :1], max_new_tokens=len(ids) - 1, do_sample=False, eos_token_id=None)
    print(json.dumps({"mean_nll": nll, "tokens": len(ids) - 1, "greedy_reproduces_ids": greedy[0].tolist() == ids}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
