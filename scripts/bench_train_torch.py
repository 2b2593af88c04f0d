#!/usr/bin/env python3
"""PyTorch reference for `tessera bench train`: trains the same Llama shapes the same way
(GQA attention with rotate-half RoPE, RMSNorm, SwiGLU, tied embeddings; AdamW with weight
decay on matrices only, global gradient-norm clipping at 1.0; batch 16 x 128 random tokens)
and prints the median training tokens/s.

    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch
    /tmp/torchenv/bin/python scripts/bench_train_torch.py --shape parent
    # side by side, alternating tessera and PyTorch in one sitting:
    /tmp/torchenv/bin/python scripts/bench_train_torch.py --compare target/release/tessera --rounds 3

Outside the test suite; it never runs in CI.
"""
import argparse
import json
import math
import statistics
import subprocess
import sys
import time

SHAPES = {
    # name: (hidden, layers, heads, kv_heads, intermediate); vocab 264, 256 positions
    "parent": (128, 8, 4, 2, 384),
    "8m": (256, 10, 8, 4, 768),
}
VOCAB = 264


def build(shape):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    hidden, layers, heads, kv_heads, inter = SHAPES[shape]
    head_dim = hidden // heads

    class RMSNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(hidden))

        def forward(self, x):
            return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * self.weight

    def rope_tables(seq):
        inv = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
        angles = torch.outer(torch.arange(seq).float(), inv)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos(), angles.sin()

    def rotate(x, cos, sin):
        half = x.shape[-1] // 2
        rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
        return x * cos + rotated * sin

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn_norm = RMSNorm()
            self.q = nn.Linear(hidden, heads * head_dim, bias=False)
            self.k = nn.Linear(hidden, kv_heads * head_dim, bias=False)
            self.v = nn.Linear(hidden, kv_heads * head_dim, bias=False)
            self.o = nn.Linear(heads * head_dim, hidden, bias=False)
            self.ffn_norm = RMSNorm()
            self.gate = nn.Linear(hidden, inter, bias=False)
            self.up = nn.Linear(hidden, inter, bias=False)
            self.down = nn.Linear(inter, hidden, bias=False)

        def forward(self, x, cos, sin):
            b, s, _ = x.shape
            h = self.attn_norm(x)
            q = rotate(self.q(h).view(b, s, heads, head_dim).transpose(1, 2), cos, sin)
            k = rotate(self.k(h).view(b, s, kv_heads, head_dim).transpose(1, 2), cos, sin)
            v = self.v(h).view(b, s, kv_heads, head_dim).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
            x = x + self.o(a.transpose(1, 2).reshape(b, s, heads * head_dim))
            h = self.ffn_norm(x)
            return x + self.down(F.silu(self.gate(h)) * self.up(h))

    class Llama(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(VOCAB, hidden)
            self.layers = nn.ModuleList(Block() for _ in range(layers))
            self.norm = RMSNorm()
            for p in self.parameters():
                if p.dim() >= 2:
                    nn.init.normal_(p, std=0.02)

        def forward(self, tokens):
            cos, sin = rope_tables(tokens.shape[1])
            x = self.embed(tokens)
            for layer in self.layers:
                x = layer(x, cos, sin)
            return self.norm(x) @ self.embed.weight.t()

    return Llama()


def bench(shape, batch, seq, warmup, steps, threads):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = build(shape)
    params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.95), eps=1e-8,
    )
    data = torch.randint(0, VOCAB, (batch * 8, seq + 1))
    times = []
    for step in range(warmup + steps):
        began = time.perf_counter()
        rows = torch.randint(0, data.shape[0], (batch,))
        window = data[rows]
        logits = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), window[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        loss.item()
        if step >= warmup:
            times.append(time.perf_counter() - began)
    step_s = statistics.median(times)
    return {
        "params": params,
        "batch_size": batch,
        "seq_len": seq,
        "steps_timed": steps,
        "median_step_ms": step_s * 1e3,
        "median_tokens_per_s": batch * seq / step_s,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def compare(tessera, shapes, rounds, args):
    results = {s: {"tessera": [], "pytorch": []} for s in shapes}
    for r in range(rounds):
        for shape in shapes:
            out = subprocess.run(
                [tessera, "bench", "train", "--shape", shape, "--batch-size", str(args.batch_size),
                 "--seq-len", str(args.seq_len), "--warmup", str(args.warmup), "--steps", str(args.steps), "--json"],
                check=True, capture_output=True, text=True,
            ).stdout
            t = json.loads(out)["shapes"][0]["result"]["median_tokens_per_s"]
            out = subprocess.run(
                [sys.executable, __file__, "--shape", shape, "--batch-size", str(args.batch_size),
                 "--seq-len", str(args.seq_len), "--warmup", str(args.warmup), "--steps", str(args.steps),
                 "--threads", str(args.threads)],
                check=True, capture_output=True, text=True,
            ).stdout
            p = json.loads(out)["median_tokens_per_s"]
            results[shape]["tessera"].append(t)
            results[shape]["pytorch"].append(p)
            print(f"round {r + 1} {shape:<7} tessera {t:8.0f} tok/s   pytorch {p:8.0f} tok/s", flush=True)
    print(f"\n{'shape':<8} {'tessera tok/s':>14} {'pytorch tok/s':>14} {'ratio':>7}   (medians of {rounds} alternating rounds)")
    for shape in shapes:
        t = statistics.median(results[shape]["tessera"])
        p = statistics.median(results[shape]["pytorch"])
        print(f"{shape:<8} {t:>14.0f} {p:>14.0f} {t / p:>6.2f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="parent")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--compare", metavar="TESSERA_BINARY", help="alternate tessera and PyTorch runs")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, ["parent", "8m"], args.rounds, args)
    else:
        print(json.dumps({"shape": args.shape, **bench(args.shape, args.batch_size, args.seq_len,
                                                       args.warmup, args.steps, args.threads)}))


if __name__ == "__main__":
    main()
