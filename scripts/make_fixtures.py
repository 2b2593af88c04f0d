"""Make the committed test fixtures under tests/fixtures/ (outside CI; re-runnable).

Every fixture is written by an independent implementation, never by tessera:
  - tokenizers: HF `tokenizers` (byte-level BPE) and `sentencepiece` (SPM BPE, byte fallback),
  - HF checkpoints: transformers 5.x `save_pretrained` (transformers-5-style config.json with
    `rope_parameters`) and transformers 4.x `save_pretrained` of the same weights
    (transformers-4-style config.json: top-level `rope_theta`, `rope_scaling`),
  - the DeciLM / nemotron-nas checkpoint: numpy (safetensors bytes written by hand, bf16),
  - GGUF files: llama.cpp's own convert_hf_to_gguf.py and llama-quantize,
  - reference figures: transformers (float32 after loading the bf16 weights), llama.cpp (through
    llama-cpp-python bound to the llama.cpp build below), the PyPI `gguf` package (dequantize),
    and a numpy forward (scripts/np_llama_ref.py).

Environment (see tests/fixtures/README.md for the versions used):
    PYREF=/work/pyref           # venv5 (transformers 5.x), venv4 (transformers 4.x), llama.cpp/
    $PYREF/venv5/bin/python scripts/make_fixtures.py            # everything
    $PYREF/venv5/bin/python scripts/make_fixtures.py --only hf  # or: tokenizers, gguf, deci, gguf-refs
The transformers-4 half runs as a subprocess under $PYREF/venv4/bin/python (sub-commands _v4,
_v4tok); so does llama.cpp's converter for the DeciLM directory (transformers 5.24 cannot open a
nemotron-nas directory's tokenizer). Versions used: transformers 5.24.0 / 4.57.6, torch 2.15.0,
tokenizers 0.23.3 / 0.22.2, sentencepiece 0.2.3, gguf 0.19.0 (PyPI), llama.cpp 0c1e57098.
Training uses torch with fixed seeds on CPU; a rerun on another machine may give weights that
differ in the last bits (then every reference figure is regenerated with them).
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.dont_write_bytecode = True  # no scripts/__pycache__ in the work tree
FIX = REPO / "tests" / "fixtures"
PYREF = Path(os.environ.get("PYREF", "/work/pyref"))
LLAMA_CPP = PYREF / "llama.cpp"
LLAMA_CPP_VERSION = "ggml-org/llama.cpp@0c1e57098 (vendored in the PyPI sdist llama-cpp-python 0.3.36)"
SHAKESPEARE = REPO.parent / "shared" / "data" / "text" / "tinyshakespeare" / "input.txt"
OUT = PYREF / "out" / "fixture_src"  # not committed: sources of GGUFs that are not committed

# Text for tokenizer checks (GGUF references): ASCII, digits, accents, whitespace runs, specials.
TOKENIZER_PROBE = "Hello world! 12 apples, 3.14 pies; naïve café  \n\n  ROMEO: O, she doth teach the torches to burn bright!"
TOKENIZER_PROBE_CHAT = "<|im_start|>user\nWhat is 7*8?<|im_end|>\n<|im_start|>assistant\n"

COMMON = dict(hidden_size=64, intermediate_size=172, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=300, bos_token_id=0, eos_token_id=0)

# name -> (transformers class, config class, tokenizer, shared kwargs, transformers-4 kwargs,
#          transformers-5 kwargs, weight tweaks, sensitivity variants)
SPECS = {
    "llama3_rope": dict(
        model="LlamaForCausalLM", config="LlamaConfig", tok="bpe_smollm",
        common=dict(COMMON, max_position_embeddings=256, tie_word_embeddings=False),
        v4=dict(rope_theta=500000.0, rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                                   "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
        v5=dict(rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
                                 "high_freq_factor": 4.0, "original_max_position_embeddings": 32}),
        what="Llama, GQA 4/2, rope_scaling llama3 (factor 8, low 1, high 4, original_max_position_embeddings 32, so "
             "the 8 frequencies of head_dim 16 fall in all three regimes), rope_theta 500000, untied",
        variants={"rope_type default (scaling ignored)": dict(rope_parameters={"rope_type": "default", "rope_theta": 500000.0}),
                  "rope_theta 10000 (theta ignored)": dict(rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                                                                            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                                            "original_max_position_embeddings": 32})}),
    "llama_yarn": dict(
        model="LlamaForCausalLM", config="LlamaConfig", tok="bpe_smollm",
        common=dict(COMMON, max_position_embeddings=128, tie_word_embeddings=False),
        v4=dict(rope_theta=50000.0, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}),
        v5=dict(rope_parameters={"rope_type": "yarn", "rope_theta": 50000.0, "factor": 4.0, "original_max_position_embeddings": 32}),
        what="Llama, GQA 4/2, rope_scaling yarn (factor 4, original_max_position_embeddings 32, max_position_embeddings 128, "
             "default beta_fast 32 / beta_slow 1, attention factor 0.1*ln(4)+1 on cos/sin), rope_theta 50000, untied",
        variants={"rope_type default (scaling ignored)": dict(rope_parameters={"rope_type": "default", "rope_theta": 50000.0}),
                  "rope_type linear factor 4 (yarn read as linear)": dict(rope_parameters={"rope_type": "linear", "rope_theta": 50000.0, "factor": 4.0})}),
    "mistral_swa": dict(
        model="MistralForCausalLM", config="MistralConfig", tok="bpe_smollm",
        common=dict(COMMON, max_position_embeddings=256, tie_word_embeddings=False, sliding_window=8),
        v4=dict(rope_theta=20000.0),
        v5=dict(rope_parameters={"rope_type": "default", "rope_theta": 20000.0}),
        what="Mistral, GQA 4/2, sliding_window 8 (each query sees itself and the 7 keys before it: key j is visible "
             "from query i iff 0 <= i - j < 8) on 32-token sequences, rope_theta 20000, untied; transformers 4 writes "
             "head_dim null",
        variants={"sliding_window null (window ignored)": dict(sliding_window=None)}),
    "qwen2_bias": dict(
        model="Qwen2ForCausalLM", config="Qwen2Config", tok="bpe_qwen2",
        common=dict(COMMON, max_position_embeddings=256, tie_word_embeddings=True),
        v4=dict(rope_theta=1000000.0),
        v5=dict(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        what="Qwen2, GQA 4/2, q/k/v biases (initialised N(0, 0.5), then trained: non-zero), no o bias, "
             "rope_theta 1e6, tied embeddings",
        tweak="biases",
        variants={"q/k/v biases zeroed": "zero_bias"}),
    "qwen3_qknorm": dict(
        model="Qwen3ForCausalLM", config="Qwen3Config", tok="bpe_qwen2",
        common=dict(COMMON, max_position_embeddings=256, tie_word_embeddings=True, head_dim=32),
        v4=dict(rope_theta=1000000.0),
        v5=dict(rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        what="Qwen3, GQA 4/2, explicit head_dim 32 (q_proj [128, 64]), per-head q/k RMSNorm (weights initialised "
             "U(0.5, 1.5), then trained), rope_theta 1e6, tied embeddings",
        tweak="qknorm",
        variants={"q/k norm weights set to 1": "unit_qknorm", "q/k norm skipped": "no_qknorm"}),
    "llama_linear_hd24": dict(
        model="LlamaForCausalLM", config="LlamaConfig", tok="bpe_smollm",
        common=dict(COMMON, max_position_embeddings=256, tie_word_embeddings=False, head_dim=24),
        v4=dict(rope_theta=250000.0, rope_scaling={"type": "linear", "factor": 2.0}),
        v5=dict(rope_parameters={"rope_type": "linear", "rope_theta": 250000.0, "factor": 2.0}),
        what="Llama, GQA 4/2, explicit head_dim 24 != hidden/heads (q_proj [96, 64], k/v [48, 64], o [64, 96]), "
             "rope_scaling linear factor 2 (written the Llama-2 way, {\"type\": \"linear\"}; transformers 4 adds "
             "rope_type), rope_theta 250000, untied",
        variants={"rope_type default (scaling ignored)": dict(rope_parameters={"rope_type": "default", "rope_theta": 250000.0})}),
}

# Sources of GGUF files.
GGUF_SRC = {
    # the 8 types with 32-blocks (rows of 64 and 192 values)
    "llama_spm": dict(model="LlamaForCausalLM", config="LlamaConfig", tok="spm",
                      common=dict(hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, rms_norm_eps=1e-5, vocab_size=384, bos_token_id=1,
                                  eos_token_id=2, max_position_embeddings=256, tie_word_embeddings=False),
                      v5=dict(rope_parameters={"rope_type": "default", "rope_theta": 100000.0})),
    # K-quants need rows that are multiples of 256
    "llama_k": dict(model="LlamaForCausalLM", config="LlamaConfig", tok="bpe_smollm",
                    common=dict(hidden_size=256, intermediate_size=256, num_hidden_layers=1, num_attention_heads=4,
                                num_key_value_heads=1, rms_norm_eps=1e-5, vocab_size=300, bos_token_id=0,
                                eos_token_id=0, max_position_embeddings=256, tie_word_embeddings=False),
                    steps=200,
                    v5=dict(rope_parameters={"rope_type": "default", "rope_theta": 100000.0})),
}

SEQ_LEN = 32


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def run(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


# ----------------------------------------------------------------------------------------------
# tokenizers


def corpus_text():
    return SHAKESPEARE.read_text()


CHATML = ("{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def make_tokenizers():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    text = corpus_text()[:300000]
    out = {}
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    qwen2_regex = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
                   r"\s+(?!\S)|\s+")
    for name, pre in [
        ("bpe_smollm", pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)])),
        ("bpe_qwen2", pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(qwen2_regex), behavior="isolated", invert=False),
                                               pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)])),
    ]:
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre
        tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
        trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=specials, min_frequency=2, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tok.train_from_iterator([text], trainer)
        tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
        assert tok.get_vocab_size() == 300, tok.get_vocab_size()
        d = FIX / "tokenizers" / name
        d.mkdir(parents=True, exist_ok=True)
        tok.save(str(d / "tokenizer.json"))
        (d / "tokenizer_config.json").write_text(json.dumps({
            "add_bos_token": False, "add_prefix_space": False, "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
            "unk_token": "<|endoftext|>", "model_max_length": 131072,
            "tokenizer_class": {"bpe_smollm": "PreTrainedTokenizerFast", "bpe_qwen2": "Qwen2Tokenizer"}[name],
            "clean_up_tokenization_spaces": False, "chat_template": CHATML}, indent=2) + "\n")
        out[name] = d
    # SentencePiece BPE with byte fallback (Llama-1/2 style), vocab 384
    import sentencepiece as spm
    d = FIX / "tokenizers" / "spm"
    d.mkdir(parents=True, exist_ok=True)
    tmp = OUT / "spm_corpus.txt"
    OUT.mkdir(parents=True, exist_ok=True)
    tmp.write_text(text)
    spm.SentencePieceTrainer.train(
        input=str(tmp), model_prefix=str(OUT / "spm"), vocab_size=384, model_type="bpe", byte_fallback=True,
        character_coverage=1.0, normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True,
        allow_whitespace_only_pieces=True, add_dummy_prefix=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, input_sentence_size=0, shuffle_input_sentence=False, minloglevel=2)
    shutil.copy(OUT / "spm.model", d / "tokenizer.model")
    from transformers import LlamaTokenizer
    t = LlamaTokenizer.from_pretrained(str(d))  # transformers converts tokenizer.model -> tokenizer.json
    t.save_pretrained(str(d))
    sp = spm.SentencePieceProcessor(model_file=str(d / "tokenizer.model"))
    for s in [TOKENIZER_PROBE, text[5000:6000]]:
        assert sp.encode(s) == t.encode(s, add_special_tokens=False), "HF tokenizer.json disagrees with sentencepiece"
    out["spm"] = d
    return out


def hf_tokenizer(tokname):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(FIX / "tokenizers" / tokname))


def copy_tokenizer(tokname, dest):
    for f in (FIX / "tokenizers" / tokname).iterdir():
        shutil.copy(f, dest / f.name)


def eval_sequences(tokname):
    """Two sequences of SEQ_LEN ids: BOS + 31 tokens of held-out Shakespeare (chars 1,000,000+)."""
    tok = hf_tokenizer(tokname)
    text = corpus_text()
    bos = tok.convert_tokens_to_ids(tok.bos_token)
    seqs = []
    for start in (1_000_000, 1_050_000):
        ids = tok.encode(text[start:start + 400], add_special_tokens=False)
        seqs.append([bos] + ids[:SEQ_LEN - 1])
    return seqs


# ----------------------------------------------------------------------------------------------
# HF checkpoints


def build_and_train(spec, seed, steps=500):
    import torch
    import transformers
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    cfg = getattr(transformers, spec["config"])(**spec["common"], **spec["v5"])
    cfg._attn_implementation = "eager"
    model = getattr(transformers, spec["model"])(cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("layernorm.weight") or name.endswith("norm.weight"):
                p.copy_(0.7 + 0.6 * torch.rand(p.shape, generator=g))
            if spec.get("tweak") == "biases" and name.endswith("_proj.bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            if spec.get("tweak") == "qknorm" and (name.endswith("q_norm.weight") or name.endswith("k_norm.weight")):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
    tok = hf_tokenizer(spec["tok"])
    data = torch.tensor(tok.encode(corpus_text()[:500000], add_special_tokens=False))
    bos = tok.convert_tokens_to_ids(tok.bos_token)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 10) * 0.5 * (1 + math.cos(math.pi * s / steps)))
    model.train()
    for step in range(steps):
        starts = torch.randint(0, len(data) - 64, (16,), generator=g)
        x = torch.stack([torch.cat([torch.tensor([bos]), data[s:s + 63]]) for s in starts])
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad()
        if step % 50 == 0 or step == steps - 1:
            print(f"  step {step} loss {loss.item():.4f}", flush=True)
    model.eval()
    return model


def hf_reference(model_dir, seqs, positions=(0, 7, 15, 31), config_override=None, weight_mod=None):
    """transformers' NLL (float32 forward of the bf16 weights; float64 log-softmax)."""
    import torch
    import transformers
    kw = dict(dtype=torch.float32) if transformers.__version__.startswith("5") else dict(torch_dtype=torch.float32)
    if config_override is not None:
        kw["config"] = config_override
    model = transformers.AutoModelForCausalLM.from_pretrained(str(model_dir), attn_implementation="eager", **kw).eval()
    if weight_mod is not None:
        weight_mod(model)
    total, count, per_seq, argmax, rows = 0.0, 0, [], [], []
    with torch.no_grad():
        for si, ids in enumerate(seqs):
            logits = model(torch.tensor([ids])).logits[0].double()
            lp = torch.log_softmax(logits[:-1], dim=-1)
            nll = -lp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
            total += nll.sum().item()
            count += len(ids) - 1
            per_seq.append(nll.mean().item())
            if si == 0:
                rows = [{"sequence": 0, "position": p, "logits": [float(v) for v in logits[p].float()]}
                        for p in (1, 8, 16, len(ids) - 1)]
            for p in positions:
                argmax.append({"sequence": si, "position": p, "token": int(logits[p].argmax()),
                               "logit": float(logits[p].max())})
    rot = model.model.rotary_emb
    return {"mean_nll": total / count, "count": count, "per_sequence_mean_nll": per_seq, "argmax": argmax, "logits": rows,
            "inv_freq": [float(v) for v in rot.inv_freq], "attention_scaling": float(rot.attention_scaling),
            "transformers_version": transformers.__version__}


def make_hf(names):
    import torch
    import transformers
    for i, name in enumerate(names):
        spec = SPECS[name]
        print(f"== {name}", flush=True)
        base = FIX / "hf" / name
        if base.exists():
            shutil.rmtree(base)
        v5, v4 = base / "v5", base / "v4"
        model = build_and_train(spec, seed=1000 + i)
        model.to(torch.bfloat16).save_pretrained(str(v5), max_shard_size="100KB")
        copy_tokenizer(spec["tok"], v5)
        seqs = eval_sequences(spec["tok"])
        ref5 = hf_reference(v5, seqs)
        # the same weights saved by transformers 4.x with its own config
        v4.mkdir(parents=True)
        out = subprocess.run([str(PYREF / "venv4" / "bin" / "python"), __file__, "_v4", name, str(v5), str(v4),
                              json.dumps(seqs)], check=True, capture_output=True, text=True)
        ref4 = json.loads(out.stdout.strip().splitlines()[-1])
        copy_tokenizer(spec["tok"], v4)
        same = {}
        for f in sorted(v5.glob("*.safetensors")):
            same[f.name] = (v4 / f.name).exists() and (v4 / f.name).read_bytes() == f.read_bytes()
        # sensitivity: what a misread config / weight costs in NLL
        sens = {}
        for label, var in spec.get("variants", {}).items():
            if isinstance(var, dict):
                cfg = transformers.AutoConfig.from_pretrained(str(v5))
                for k, v in var.items():
                    setattr(cfg, k, v)
                r = hf_reference(v5, seqs, config_override=cfg)
            else:
                r = hf_reference(v5, seqs, weight_mod=WEIGHT_MODS[var])
            sens[label] = r["mean_nll"]
        ref = {
            "what": spec["what"],
            "made_by": f"transformers {transformers.__version__} ({spec['model']}, torch {torch.__version__}): random init "
                       f"(seed {1000 + i}, all RMSNorm weights U(0.7, 1.3)), 500 AdamW steps on tiny-shakespeare "
                       f"(16 x 64 tokens, BOS first), then cast to bf16; v5/ saved by transformers "
                       f"{transformers.__version__}, v4/ = the same tensors loaded into transformers {ref4['transformers_version']} "
                       f"and saved by it (max_shard_size 100KB, so both are sharded with model.safetensors.index.json)",
            "tokenizer": spec["tok"],
            "sequences": seqs,
            "nll_definition": "mean over both sequences of -log p(ids[t+1] | ids[..t]), t = 0..30 (62 predictions), "
                              "nats/token; logits from a float32 forward (attn_implementation eager) of the bf16 "
                              "weights upcast to float32; log-softmax in float64",
            "mean_nll": ref5["mean_nll"],
            "count": ref5["count"],
            "per_sequence_mean_nll": ref5["per_sequence_mean_nll"],
            "argmax": ref5["argmax"],
            "logits": ref5["logits"],
            "rope_inv_freq": ref5["inv_freq"],
            "rope_attention_scaling": ref5["attention_scaling"],
            "transformers_v5": {"version": ref5["transformers_version"], "dir": "v5", "mean_nll": ref5["mean_nll"]},
            "transformers_v4": {"version": ref4["transformers_version"], "dir": "v4", "mean_nll": ref4["mean_nll"],
                                "per_sequence_mean_nll": ref4["per_sequence_mean_nll"],
                                "rope_inv_freq": ref4["inv_freq"], "rope_attention_scaling": ref4["attention_scaling"]},
            "v4_v5_safetensors_identical": same,
            "sensitivity_mean_nll": sens,
        }
        (base / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
        print(json.dumps({k: ref[k] for k in ("mean_nll", "sensitivity_mean_nll")}), flush=True)


def _zero_bias(model):
    import torch
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("_proj.bias"):
                p.zero_()


def _unit_qknorm(model):
    import torch
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("q_norm.weight") or n.endswith("k_norm.weight"):
                p.fill_(1.0)


def _no_qknorm(model):
    import torch
    for layer in model.model.layers:
        layer.self_attn.q_norm = torch.nn.Identity()
        layer.self_attn.k_norm = torch.nn.Identity()


WEIGHT_MODS = {"zero_bias": _zero_bias, "unit_qknorm": _unit_qknorm, "no_qknorm": _no_qknorm}


def sub_v4(name, v5dir, v4dir, seqs_json):
    """Runs under transformers 4.x: load the v5 tensors into a 4.x model, save it, print its NLL."""
    import torch
    import transformers
    from safetensors.torch import load_file
    assert transformers.__version__.startswith("4."), transformers.__version__
    spec = SPECS[name]
    cfg = getattr(transformers, spec["config"])(**spec["common"], **spec["v4"])
    model = getattr(transformers, spec["model"])(cfg).to(torch.bfloat16)
    sd = {}
    for f in sorted(Path(v5dir).glob("*.safetensors")):
        sd.update(load_file(str(f)))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not unexpected, unexpected
    assert all(m == "lm_head.weight" for m in missing) and (not missing or cfg.tie_word_embeddings), missing
    model.save_pretrained(v4dir, max_shard_size="100KB")
    ref = hf_reference(v4dir, json.loads(seqs_json))
    print(json.dumps(ref))


def sub_v4_tokenizer(d):
    """Runs under transformers 4.x: tokenizer.json / tokenizer_config.json for a SentencePiece dir."""
    import sentencepiece as spm
    import transformers
    assert transformers.__version__.startswith("4."), transformers.__version__
    t = transformers.LlamaTokenizerFast(vocab_file=str(Path(d) / "tokenizer.model"), legacy=False, add_prefix_space=True,
                                        add_bos_token=True,
                                        add_eos_token=False)
    t.save_pretrained(d)
    sp = spm.SentencePieceProcessor(model_file=str(Path(d) / "tokenizer.model"))
    text = corpus_text()[5000:8000] + TOKENIZER_PROBE
    assert sp.encode(text) == t.encode(text, add_special_tokens=False), "transformers 4 tokenizer != sentencepiece"


# ----------------------------------------------------------------------------------------------
# GGUF


def convert(hf_dir, outfile, outtype, pre_name, venv="venv5"):
    """llama.cpp's convert_hf_to_gguf.py, with one documented patch: a tiny tokenizer's
    chkhsh is not in the converter's table, so when (and only when) the converter raises
    'BPE pre-tokenizer was not recognized', it uses `pre_name` (the pre-tokenizer whose rules the
    tiny tokenizer was built with). Runs in a subprocess with the vendored gguf-py."""
    code = (
        "import sys, runpy\n"
        f"sys.path.insert(0, {str(LLAMA_CPP)!r}); sys.path.insert(1, {str(LLAMA_CPP / 'gguf-py')!r})\n"
        "import conversion.base as b\n"
        "orig = b.TextModel.get_vocab_base_pre\n"
        "def pre(self, tokenizer):\n"
        "    try:\n"
        "        return orig(self, tokenizer)\n"
        "    except NotImplementedError:\n"
        f"        return {pre_name!r}\n"
        "b.TextModel.get_vocab_base_pre = pre\n"
        f"sys.argv = ['convert_hf_to_gguf.py', {str(hf_dir)!r}, '--outfile', {str(outfile)!r}, '--outtype', {outtype!r}]\n"
        f"runpy.run_path({str(LLAMA_CPP / 'convert_hf_to_gguf.py')!r}, run_name='__main__')\n"
    )
    run([PYREF / venv / "bin" / "python", "-c", code], stdout=subprocess.DEVNULL)


def quantize(src, dst, qtype):
    run([LLAMA_CPP / "build" / "bin" / "llama-quantize", "--pure", src, dst, qtype, "2"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def llama_cpp_nll(gguf_path, seqs, probes=()):
    """llama.cpp's NLL through llama-cpp-python (bound to the llama.cpp build above):
    logits_all, one sequence per eval, float32 logits, float64 log-softmax."""
    os.environ["LLAMA_CPP_LIB_PATH"] = str(LLAMA_CPP / "build" / "bin")
    import numpy as np
    from llama_cpp import Llama
    llm = Llama(model_path=str(gguf_path), n_ctx=256, n_batch=256, n_ubatch=256, logits_all=True, n_threads=2,
                verbose=False, seed=0)
    total, count, per_seq = 0.0, 0, []
    for ids in seqs:
        llm.reset()
        llm.eval(ids)
        logits = np.array(llm.scores[:len(ids)], dtype=np.float64)
        m = logits.max(axis=-1, keepdims=True)
        lp = logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))
        nll = -lp[np.arange(len(ids) - 1), np.array(ids[1:])]
        total += nll.sum()
        count += len(ids) - 1
        per_seq.append(float(nll.mean()))
    toks = {}
    for p in probes:
        toks[p] = {"add_bos_false_special_true": llm.tokenize(p.encode(), add_bos=False, special=True),
                   "add_bos_true_special_false": llm.tokenize(p.encode(), add_bos=True, special=False)}
    del llm
    return {"mean_nll": float(total / count), "count": count, "per_sequence_mean_nll": per_seq}, toks


def gguf_reference(path):
    """Metadata and, per tensor, name / type / shape (as gguf-py reports it, ggml order: ne[0] =
    row length first) / sha256 of the little-endian float32 bytes of gguf.quants.dequantize()."""
    import gguf
    import numpy as np
    r = gguf.GGUFReader(str(path))
    meta = {}
    for k, f in r.fields.items():
        if k.startswith("GGUF."):
            continue
        types = [t.name for t in f.types]
        try:
            v = f.contents()
        except Exception:  # pragma: no cover
            v = None
        if isinstance(v, list) and len(v) > 16:
            meta[k] = {"types": types, "len": len(v), "first": v[:8],
                       "sha256_json": sha256_bytes(json.dumps(v).encode())}
        else:
            meta[k] = {"types": types, "value": v}
    tensors = []
    for t in r.tensors:
        deq = gguf.quants.dequantize(t.data, t.tensor_type).astype("<f4")
        tensors.append({"name": t.name, "type": t.tensor_type.name, "shape": [int(x) for x in t.shape],
                        "n_bytes": int(t.n_bytes), "offset": int(t.data_offset),
                        "dequant_sha256": sha256_bytes(deq.tobytes()),
                        "dequant_first8": [float(x) for x in deq.reshape(-1)[:8]],
                        "dequant_sum": float(deq.astype(np.float64).sum())})
    return {"gguf_version": int(r.fields["GGUF.version"].contents()), "metadata": meta, "tensors": tensors,
            "gguf_py": f"PyPI gguf {gguf.__version__ if hasattr(gguf, '__version__') else '0.19.0'}"}


def save_hf_src(name, spec, seed, dest):
    import torch
    if dest.exists():
        shutil.rmtree(dest)
    model = build_and_train(spec, seed=seed, steps=spec.get("steps", 500))
    model.to(torch.bfloat16).save_pretrained(str(dest), max_shard_size="100KB")
    copy_tokenizer(spec["tok"], dest)
    return dest


def write_gguf_ref(gguf_path, seqs, extra):
    nll, toks = llama_cpp_nll(gguf_path, seqs, probes=(TOKENIZER_PROBE, TOKENIZER_PROBE_CHAT))
    ref = gguf_reference(gguf_path)
    ref.update(extra)
    ref["llama_cpp"] = LLAMA_CPP_VERSION
    ref["sequences"] = seqs
    ref["llama_cpp_mean_nll"] = nll["mean_nll"]
    ref["llama_cpp_nll"] = dict(nll, how="llama-cpp-python 0.3.36 bound to the llama.cpp build (LLAMA_CPP_LIB_PATH), "
                                         "Llama(logits_all=True, n_ctx=256, n_threads=2).eval(ids) per sequence, "
                                         "float32 logits, log-softmax in float64; mean over all predictions")
    ref["llama_cpp_tokenize"] = toks
    # an exact-arithmetic reference: llama.cpp's quantised matmuls also quantise the activations
    # (Q8_0 / Q8_1 / Q8_K) and its F16 matmuls round them to f16; this one does not.
    sys.path.insert(0, str(REPO / "scripts"))
    import np_llama_ref as npr
    cfg, w = npr.from_gguf(gguf_path)
    tot, cnt = 0.0, 0
    for ids in seqs:
        s_, c_ = npr.nll_sum(npr.forward(cfg, w, ids), ids)
        tot, cnt = tot + s_, cnt + c_
    ref["numpy_mean_nll"] = tot / cnt
    ref["numpy_how"] = ("scripts/np_llama_ref.py from_gguf + forward: float64 over gguf.quants.dequantize weights "
                        "(q/k as stored; interleaved RoPE for llama/deci, rotate-half for qwen2/qwen3; "
                        "rope_freqs.weight divides the frequencies)")
    out = gguf_path.with_suffix(".json")
    out.write_text(json.dumps(ref, indent=1) + "\n")
    print(f"  {gguf_path.name}: {gguf_path.stat().st_size} bytes, llama.cpp NLL {nll['mean_nll']:.6f}, "
          f"numpy NLL {ref['numpy_mean_nll']:.6f}", flush=True)
    return ref


def refresh_gguf_refs():
    """Recompute every gguf/*.json from its .gguf (same sequences, same extra fields)."""
    keep = ("source", "source_transformers_mean_nll", "source_numpy_mean_nll", "made_by")
    for j in sorted((FIX / "gguf").glob("*.json")):
        old = json.loads(j.read_text())
        write_gguf_ref(j.with_suffix(".gguf"), old["sequences"], {k: old[k] for k in keep if k in old})


def make_gguf():
    import transformers
    gdir = FIX / "gguf"
    gdir.mkdir(parents=True, exist_ok=True)
    OUT.mkdir(parents=True, exist_ok=True)
    # 1) the 32-block types from a committed bf16 source (SentencePiece tokenizer)
    src = save_hf_src("llama_spm", GGUF_SRC["llama_spm"], 2001, gdir / "src_llama_spm")
    seqs = eval_sequences("spm")
    hf = hf_reference(src, seqs)
    (src / "reference.json").write_text(json.dumps({
        "what": "bf16 HF source of the llama-*.gguf fixtures (Llama, hidden 64, FFN 192, 2 layers, 4 heads / 2 KV "
                "heads, head_dim 16, rope_theta 1e5, untied, SentencePiece BPE vocab 384 with byte fallback)",
        "sequences": seqs, "transformers_mean_nll": hf["mean_nll"], "argmax": hf["argmax"],
        "transformers_version": transformers.__version__}, indent=1) + "\n")
    common = {"source": "src_llama_spm", "source_transformers_mean_nll": hf["mean_nll"]}
    for t in ("f32", "f16", "bf16"):
        p = gdir / f"llama-{t}.gguf"
        convert(src, p, t, "default")
        write_gguf_ref(p, seqs, dict(common, made_by=f"convert_hf_to_gguf.py --outtype {t}"))
    for q in ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"):
        p = gdir / f"llama-{q.lower()}.gguf"
        quantize(gdir / "llama-f32.gguf", p, q)
        write_gguf_ref(p, seqs, dict(common, made_by=f"llama-quantize --pure llama-f32.gguf {q}"))
    # 2) K-quants (rows of 256) from an uncommitted source (byte-level BPE, smollm pre-tokenizer)
    srck = save_hf_src("llama_k", GGUF_SRC["llama_k"], 2002, OUT / "llama_k")
    seqs_k = eval_sequences("bpe_smollm")
    hfk = hf_reference(srck, seqs_k)
    f32k = OUT / "llama_k-f32.gguf"
    convert(srck, f32k, "f32", "smollm")
    for q in ("Q4_K", "Q5_K", "Q6_K"):
        p = gdir / f"llama_k-{q.lower()}.gguf"
        quantize(f32k, p, q)
        write_gguf_ref(p, seqs_k, {"source": "hidden 256, FFN 256, 1 layer, 4 heads / 1 KV head, head_dim 64, vocab 300, "
                                             "untied, theta 1e5 (HF source not committed: /work/pyref/out/fixture_src/llama_k)",
                                   "source_transformers_mean_nll": hfk["mean_nll"],
                                   "made_by": f"convert_hf_to_gguf.py --outtype f32, then llama-quantize --pure {q}"})
    # 3) qwen2 / qwen3 / llama3-rope from the committed HF fixtures
    for name, t, pre in (("qwen2_bias", "f32", "qwen2"), ("qwen3_qknorm", "f32", "qwen2"), ("llama3_rope", "f16", "smollm")):
        srcd = FIX / "hf" / name / "v5"
        p = gdir / f"{name}-{t}.gguf"
        convert(srcd, p, t, pre)
        hfref = json.loads((FIX / "hf" / name / "reference.json").read_text())
        write_gguf_ref(p, hfref["sequences"], {"source": f"hf/{name}/v5", "source_transformers_mean_nll": hfref["mean_nll"],
                                               "made_by": f"convert_hf_to_gguf.py --outtype {t}"})


# ----------------------------------------------------------------------------------------------
# DeciLM / nemotron-nas (numpy)

DECI_BLOCKS = [
    {"attention": {"n_heads_in_group": 2, "no_op": False, "replace_with_linear": False, "sparsify": None},
     "ffn": {"ffn_mult": 1.0, "no_op": False, "replace_with_linear": False, "sparsify": None}},
    {"attention": {"n_heads_in_group": None, "no_op": True, "replace_with_linear": False, "sparsify": None},
     "ffn": {"ffn_mult": 6.5, "no_op": False, "replace_with_linear": False, "sparsify": None}},
    {"attention": {"n_heads_in_group": None, "no_op": False, "replace_with_linear": True, "sparsify": None},
     "ffn": {"ffn_mult": 2.0, "no_op": False, "replace_with_linear": False, "sparsify": None}},
    {"attention": {"n_heads_in_group": None, "no_op": True, "replace_with_linear": False, "sparsify": None},
     "ffn": {"ffn_mult": None, "no_op": True, "replace_with_linear": False, "sparsify": None}},
    {"attention": {"n_heads_in_group": 4, "no_op": False, "replace_with_linear": False, "sparsify": None},
     "ffn": {"ffn_mult": 0.5, "no_op": False, "replace_with_linear": False, "sparsify": None}},
]


def deci_ffn_size(mult, hidden):
    n = int(2 * mult * hidden / 3)
    return n if n % 256 == 0 else n + 256 - n % 256


def f32_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16)."""
    import numpy as np
    b = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    rounded = b + 0x7FFF + ((b >> 16) & 1)
    return (rounded >> 16).astype(np.uint16)


def bf16_bits_to_f32(u):
    import numpy as np
    return (u.astype(np.uint32) << 16).view(np.float32)


def write_safetensors(path, tensors):
    """tensors: name -> (dtype string, shape, raw little-endian bytes)."""
    header, off = {}, 0
    for name in sorted(tensors):
        dt, shape, raw = tensors[name]
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(raw)]}
        off += len(raw)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for name in sorted(tensors):
            f.write(tensors[name][2])


def make_deci():
    import numpy as np
    sys.path.insert(0, str(REPO / "scripts"))
    import np_llama_ref as ref
    hidden, heads, vocab, hd = 64, 4, 384, 16
    theta, rope = 500000.0, {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                             "original_max_position_embeddings": 32, "rope_type": "llama3"}
    rng = np.random.default_rng(3003)
    W = {}

    def mat(out_dim, in_dim, gain=1.0):
        return (rng.standard_normal((out_dim, in_dim)) * gain / np.sqrt(in_dim)).astype(np.float32)

    def norm(n):
        return (0.7 + 0.6 * rng.random(n)).astype(np.float32)

    W["model.embed_tokens.weight"] = rng.standard_normal((vocab, hidden)).astype(np.float32)
    for i, b in enumerate(DECI_BLOCKS):
        p = f"model.layers.{i}."
        a, f = b["attention"], b["ffn"]
        if a["n_heads_in_group"] is not None:
            kv = heads // a["n_heads_in_group"]
            W[p + "input_layernorm.weight"] = norm(hidden)
            W[p + "self_attn.q_proj.weight"] = mat(heads * hd, hidden, 2.0)
            W[p + "self_attn.k_proj.weight"] = mat(kv * hd, hidden, 2.0)
            W[p + "self_attn.v_proj.weight"] = mat(kv * hd, hidden)
            W[p + "self_attn.o_proj.weight"] = mat(hidden, heads * hd, 0.5)
        elif a["replace_with_linear"]:
            W[p + "input_layernorm.weight"] = norm(hidden)
            W[p + "self_attn.linear_attn.weight"] = mat(hidden, hidden, 0.5)
        if not f["no_op"]:
            n = deci_ffn_size(f["ffn_mult"], hidden)
            W[p + "post_attention_layernorm.weight"] = norm(hidden)
            W[p + "mlp.gate_proj.weight"] = mat(n, hidden)
            W[p + "mlp.up_proj.weight"] = mat(n, hidden)
            W[p + "mlp.down_proj.weight"] = mat(hidden, n, 0.5)
    W["model.norm.weight"] = norm(hidden)
    W["lm_head.weight"] = mat(vocab, hidden, 3.0)
    # bf16, two shards
    bits = {k: f32_to_bf16_bits(v) for k, v in W.items()}
    d = FIX / "deci"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    names = list(W)
    shards = [names[:len(names) // 2], names[len(names) // 2:]]
    weight_map, total = {}, 0
    for si, group in enumerate(shards):
        fname = f"model-{si + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(d / fname, {k: ("BF16", bits[k].shape, bits[k].astype("<u2").tobytes()) for k in group})
        for k in group:
            weight_map[k] = fname
            total += bits[k].size * 2
    (d / "model.safetensors.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n")
    config = {
        "architectures": ["DeciLMForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "auto_map": {"AutoConfig": "configuration_decilm.DeciLMConfig",
                     "AutoModelForCausalLM": "modeling_decilm.DeciLMForCausalLM"},
        "block_configs": DECI_BLOCKS, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
        "hidden_size": hidden, "initializer_range": 0.02, "intermediate_size": None, "max_position_embeddings": 256,
        "mlp_bias": False, "model_type": "nemotron-nas", "num_attention_heads": heads, "num_hidden_layers": len(DECI_BLOCKS),
        "num_key_value_heads": None, "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": rope,
        "rope_theta": theta, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.44.2",
        "use_cache": True, "vocab_size": vocab}
    (d / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    # Tokenizer files written by transformers 4.x (LlamaTokenizerFast from the same tokenizer.model):
    # transformers 5.24's AutoTokenizer cannot open this directory (it parses config.json, and its
    # rope standardisation fails on an unknown model_type with rope_scaling), so llama.cpp's
    # converter (which calls AutoTokenizer for a DeciLM vocab) runs under transformers 4.x here.
    shutil.copy(FIX / "tokenizers" / "spm" / "tokenizer.model", d / "tokenizer.model")
    run([PYREF / "venv4" / "bin" / "python", __file__, "_v4tok", str(d)])
    # numpy reference on the bf16 weights
    Wf = {k: bf16_bits_to_f32(v).astype(np.float64) for k, v in bits.items()}
    cfg = {"hidden": hidden, "eps": 1e-5, "vocab": vocab, "rope_layout": "half", "rope_mscale": 1.0,
           "inv_freq": ref.llama3_inv_freq(theta, hd, 8.0, 1.0, 4.0, 32), "layers": []}
    w = {"embed": Wf["model.embed_tokens.weight"], "norm": Wf["model.norm.weight"], "lm_head": Wf["lm_head.weight"]}
    for i, b in enumerate(DECI_BLOCKS):
        p, a, f = f"model.layers.{i}.", b["attention"], b["ffn"]
        L = {"ffn": not f["no_op"]}
        if a["n_heads_in_group"] is not None:
            L.update(attn="full", n_heads=heads, n_kv=heads // a["n_heads_in_group"], head_dim=hd)
            for s in "qkvo":
                w[f"l{i}.{s}"] = Wf[p + f"self_attn.{s}_proj.weight"]
            w[f"l{i}.attn_norm"] = Wf[p + "input_layernorm.weight"]
        elif a["replace_with_linear"]:
            L["attn"] = "linear"
            w[f"l{i}.linear"] = Wf[p + "self_attn.linear_attn.weight"]
            w[f"l{i}.attn_norm"] = Wf[p + "input_layernorm.weight"]
        else:
            L["attn"] = "none"
        if L["ffn"]:
            w[f"l{i}.ffn_norm"] = Wf[p + "post_attention_layernorm.weight"]
            for s in ("gate", "up", "down"):
                w[f"l{i}.{s}"] = Wf[p + f"mlp.{s}_proj.weight"]
        cfg["layers"].append(L)
    seqs = eval_sequences("spm")
    tot, cnt, per = 0.0, 0, []
    for ids in seqs:
        s, c = ref.nll_sum(ref.forward(cfg, w, ids), ids)
        tot += s
        cnt += c
        per.append(s / c)
    np_ref = {"mean_nll": tot / cnt, "count": cnt, "per_sequence_mean_nll": per,
              "how": "scripts/np_llama_ref.py float64 forward of the bf16 weights (HF rotate-half RoPE, llama3 "
                     "frequencies computed by np_llama_ref.llama3_inv_freq)"}
    (d / "reference.json").write_text(json.dumps({
        "what": "DeciLM / nemotron-nas child of a Llama-3.x-style parent (llama3 rope_scaling, theta 5e5), written by "
                "numpy: hidden 64, 4 heads, head_dim 16, vocab 384 (SentencePiece), untied; layer 0: GQA 2 KV heads, "
                "FFN 256 (ffn_mult 1.0); layer 1: attention no-op, FFN 512 (ffn_mult 6.5); layer 2: linear attention "
                "(self_attn.linear_attn.weight [64, 64]), FFN 256 (ffn_mult 2.0); layer 3: attention and FFN no-op "
                "(ffn_mult null); layer 4: 1 KV head, FFN 256 (ffn_mult 0.5). FFN size = "
                "ceil_to_multiple(int(2*ffn_mult*hidden/3), 256). No FFN replace_with_linear: llama.cpp's converter "
                "has no tensor mapping for it (mlp.linear_mlp) and its deci graph no linear FFN.",
        "made_by": "scripts/make_fixtures.py make_deci (numpy RNG seed 3003; bf16 = round-to-nearest-even of float32)",
        "sequences": seqs, "numpy_reference": np_ref, "mean_nll": np_ref["mean_nll"]}, indent=1) + "\n")
    print(f"  deci numpy NLL {np_ref['mean_nll']:.6f}", flush=True)
    (FIX / "gguf").mkdir(parents=True, exist_ok=True)
    p = FIX / "gguf" / "deci-f16.gguf"
    convert(d, p, "f16", "default", venv="venv4")
    write_gguf_ref(p, seqs, {"source": "deci", "source_numpy_mean_nll": np_ref["mean_nll"],
                             "made_by": "convert_hf_to_gguf.py --outtype f16"})


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "_v4tok":
        sub_v4_tokenizer(sys.argv[2])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "_v4":
        sub_v4(*sys.argv[2:6])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=["tokenizers", "hf", "gguf", "deci", "gguf-refs"], action="append")
    ap.add_argument("--models", nargs="*", default=list(SPECS))
    a = ap.parse_args()
    only = set(a.only or ["tokenizers", "hf", "gguf", "deci"])
    FIX.mkdir(parents=True, exist_ok=True)
    if "tokenizers" in only:
        make_tokenizers()
    if "hf" in only:
        make_hf(a.models)
    if "gguf" in only:
        make_gguf()
    if "deci" in only:
        make_deci()
    if "gguf-refs" in only:
        refresh_gguf_refs()


if __name__ == "__main__":
    main()
