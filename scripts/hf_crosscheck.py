"""Cross-check a tessera HF export against HF transformers (outside the test suite).

Loads DIR with transformers' AutoModelForCausalLM (Llama, Mistral, Qwen2, Qwen3, ... as its
config.json says; float32, eager attention) and prints, as JSON, the mean NLL of the ids in
IDS_FILE (one sequence per non-empty line, whitespace-separated ids, each evaluated as given;
the mean is over all predictions of all lines) and whether greedy decoding from the first id
reproduces the first sequence. Compare with `tessera eval nll --model DIR --ids IDS_FILE`.

    python3 -m venv .venv && .venv/bin/pip install torch transformers safetensors
    tessera export --model stories260K.bin --format hf --untie --shard-bytes 300000 --out hf/
    tessera generate --model hf/ --greedy --print-ids --max-tokens 120 > ids.txt
    .venv/bin/python scripts/hf_crosscheck.py hf/ ids.txt

Works with transformers 4.x and 5.x (both were used for tests/fixtures/hf, see
scripts/make_fixtures.py). A DeciLM / nemotron-nas directory needs its remote code, which
transformers does not ship: check those with scripts/llamacpp_crosscheck.py on a GGUF export.
"""

import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM


def main(model_dir: str, ids_file: str) -> None:
    kw = {"dtype": torch.float32} if transformers.__version__.startswith("5") else {"torch_dtype": torch.float32}
    model = AutoModelForCausalLM.from_pretrained(model_dir, attn_implementation="eager", **kw).eval()
    seqs = [[int(x) for x in line.split()] for line in open(ids_file).read().splitlines() if line.strip()]
    total, count, per_seq = 0.0, 0, []
    with torch.no_grad():
        for ids in seqs:
            tokens = torch.tensor([ids])
            logits = model(tokens).logits[0].double()
            nll = torch.nn.functional.cross_entropy(logits[:-1], tokens[0, 1:], reduction="sum").item()
            total += nll
            count += len(ids) - 1
            per_seq.append(nll / (len(ids) - 1))
        ids = seqs[0]
        greedy = model.generate(torch.tensor([ids[:1]]), max_new_tokens=len(ids) - 1, do_sample=False,
                                eos_token_id=None)
    print(json.dumps({"mean_nll": total / count, "tokens": count, "per_sequence_mean_nll": per_seq,
                      "greedy_reproduces_ids": greedy[0].tolist() == ids,
                      "architecture": model.config.architectures, "transformers": transformers.__version__}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
