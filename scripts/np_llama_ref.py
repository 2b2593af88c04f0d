"""A plain numpy (float64) forward pass of a Llama-family decoder, used as an independent
reference by scripts/make_fixtures.py (DeciLM fixture) and scripts/smollm2_reference.py
(SmolLM2 from its GGUF). It shares no code with tessera, transformers or llama.cpp.

The model is described by a dict `cfg` and a dict `w` of numpy arrays, weights `[out, in]`:

    cfg = {
        "hidden": 64, "eps": 1e-5, "vocab": 300,
        "inv_freq": np.array([...]),        # head_dim/2 rotary frequencies (scaling already applied)
        "rope_mscale": 1.0,                 # YaRN's attention factor on cos/sin (1.0 otherwise)
        "rope_layout": "half" | "interleaved",  # HF rotate-half, or llama.cpp `llama` (GGUF) pairs
        "layers": [ {"attn": "full" | "linear" | "none", "n_heads": 4, "n_kv": 2, "head_dim": 16,
                     "ffn": True | False}, ... ],
    }
    w = {"embed": [V, H], "norm": [H], "lm_head": [V, H],
         "l{i}.attn_norm", "l{i}.q", "l{i}.k", "l{i}.v", "l{i}.o", optional "l{i}.q_bias"/"k_bias"/
         "v_bias", optional "l{i}.q_norm"/"l{i}.k_norm" (per-head RMSNorm, Qwen3), "l{i}.linear"
         (linear attention, [H, H]), "l{i}.ffn_norm", "l{i}.gate", "l{i}.up", "l{i}.down"}

Semantics follow HF transformers' Llama / Qwen2 / Qwen3 and DeciLM: pre-norm residual blocks,
RMSNorm `x / sqrt(mean(x^2) + eps) * w`, causal softmax attention with GQA (query head h uses
KV head h // (n_heads / n_kv)), scale 1/sqrt(head_dim), SwiGLU `down(silu(gate x) * up x)`.
A linear-attention layer is `x + linear(attn_norm(x))`; an attention-free layer skips the
attention half; a layer with "ffn": False skips the FFN half.
"""

import numpy as np


def rms_norm(x, weight, eps):
    x = x.astype(np.float64)
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rope(x, pos, inv_freq, mscale, layout):
    """x: [T, n_heads, head_dim]; rotate the first 2*len(inv_freq) dims (all of them here)."""
    ang = np.outer(pos, inv_freq)  # [T, d/2]
    cos = (np.cos(ang) * mscale)[:, None, :]
    sin = (np.sin(ang) * mscale)[:, None, :]
    if layout == "half":
        h = x.shape[-1] // 2
        a, b = x[..., :h], x[..., h:]
        return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
    if layout == "interleaved":
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = b * cos + a * sin
        return out
    raise ValueError(f"unknown rope layout {layout}")


def silu(x):
    return x / (1.0 + np.exp(-x))


def forward(cfg, w, ids):
    """Logits [T, V] (float64) for one sequence of token ids, positions 0..T-1."""
    ids = np.asarray(ids)
    T = len(ids)
    pos = np.arange(T, dtype=np.float64)
    eps = cfg["eps"]
    x = w["embed"][ids].astype(np.float64)
    mask = np.triu(np.full((T, T), -np.inf), k=1)
    for i, L in enumerate(cfg["layers"]):
        p = f"l{i}."
        if L["attn"] == "full":
            hn = rms_norm(x, w[p + "attn_norm"], eps)
            nh, nkv, hd = L["n_heads"], L["n_kv"], L["head_dim"]
            q = hn @ w[p + "q"].T
            k = hn @ w[p + "k"].T
            v = hn @ w[p + "v"].T
            if p + "q_bias" in w:
                q = q + w[p + "q_bias"]
                k = k + w[p + "k_bias"]
                v = v + w[p + "v_bias"]
            q = q.reshape(T, nh, hd)
            k = k.reshape(T, nkv, hd)
            v = v.reshape(T, nkv, hd)
            if p + "q_norm" in w:
                q = rms_norm(q, w[p + "q_norm"], eps)
                k = rms_norm(k, w[p + "k_norm"], eps)
            q = rope(q, pos, cfg["inv_freq"], cfg.get("rope_mscale", 1.0), cfg["rope_layout"])
            k = rope(k, pos, cfg["inv_freq"], cfg.get("rope_mscale", 1.0), cfg["rope_layout"])
            group = nh // nkv
            out = np.empty((T, nh, hd))
            for h in range(nh):
                kh = k[:, h // group, :]
                vh = v[:, h // group, :]
                s = (q[:, h, :] @ kh.T) / np.sqrt(hd) + mask
                s = s - s.max(axis=-1, keepdims=True)
                pr = np.exp(s)
                pr /= pr.sum(axis=-1, keepdims=True)
                out[:, h, :] = pr @ vh
            x = x + out.reshape(T, nh * hd) @ w[p + "o"].T
        elif L["attn"] == "linear":
            x = x + rms_norm(x, w[p + "attn_norm"], eps) @ w[p + "linear"].T
        elif L["attn"] != "none":
            raise ValueError(L["attn"])
        if L["ffn"]:
            hn = rms_norm(x, w[p + "ffn_norm"], eps)
            x = x + (silu(hn @ w[p + "gate"].T) * (hn @ w[p + "up"].T)) @ w[p + "down"].T
    x = rms_norm(x, w["norm"], eps)
    return x @ w["lm_head"].T


def log_softmax(logits):
    logits = np.asarray(logits, dtype=np.float64)
    m = logits.max(axis=-1, keepdims=True)
    return logits - m - np.log(np.exp(logits - m).sum(axis=-1, keepdims=True))


def nll_sum(logits, ids):
    """Sum of -log p(ids[t+1] | ids[..t]) over t = 0..T-2, and the count T-1."""
    lp = log_softmax(logits[:-1])
    tgt = np.asarray(ids[1:])
    return float(-lp[np.arange(len(tgt)), tgt].sum()), len(tgt)


def llama3_inv_freq(theta, head_dim, factor, low_freq_factor, high_freq_factor, original_max):
    """Llama 3.x frequency scaling (the rule Meta published with Llama 3.1)."""
    inv = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    low_wavelen = original_max / low_freq_factor
    high_wavelen = original_max / high_freq_factor
    out = []
    for f in inv:
        wl = 2 * np.pi / f
        if wl < high_wavelen:
            out.append(f)
        elif wl > low_wavelen:
            out.append(f / factor)
        else:
            smooth = (original_max / wl - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append((1 - smooth) * f / factor + smooth * f)
    return np.array(out)


def from_gguf(path):
    """(cfg, w) for a GGUF file of architecture llama, qwen2, qwen3 or deci, weights dequantised
    with the PyPI `gguf` package. q/k rows are used as stored: `llama` / `deci` files hold them
    permuted for adjacent-pair RoPE ("interleaved"), `qwen2` / `qwen3` in HF order ("half").
    `rope_freqs.weight`, when present, divides the frequencies (llama.cpp's freq_factors)."""
    import gguf
    r = gguf.GGUFReader(str(path))
    arch = r.fields["general.architecture"].contents()
    f = {k[len(arch) + 1:]: r.fields[k].contents() for k in r.fields if k.startswith(arch + ".")}
    T = {t.name: t for t in r.tensors}

    def deq(name):
        t = T[name]
        return gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float64)

    n_layers, hidden = f["block_count"], f["embedding_length"]
    heads, kvs = f["attention.head_count"], f["attention.head_count_kv"]
    ffs = f["feed_forward_length"]
    per = lambda v, i: v[i] if isinstance(v, list) else v  # noqa: E731
    first_heads = next(h for h in (heads if isinstance(heads, list) else [heads]) if h > 0)
    hd = f.get("attention.key_length", hidden // first_heads)
    theta = f.get("rope.freq_base", 10000.0)
    for k in f:
        if k.startswith("rope.scaling") or k.startswith("attention.sliding_window"):
            raise ValueError(f"{path}: {arch}.{k} is not implemented in this reference")
    inv = 1.0 / theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd)
    if "rope_freqs.weight" in T:
        inv = inv / deq("rope_freqs.weight")
    w = {"embed": deq("token_embd.weight"), "norm": deq("output_norm.weight")}
    w["lm_head"] = deq("output.weight") if "output.weight" in T else w["embed"]
    layers = []
    for i in range(n_layers):
        b, p = f"blk.{i}.", f"l{i}."
        nh, nkv, ff = per(heads, i), per(kvs, i), per(ffs, i)
        L = {"ffn": ff > 0}
        if nh > 0 and nkv > 0:
            L.update(attn="full", n_heads=nh, n_kv=nkv, head_dim=hd)
            w[p + "attn_norm"] = deq(b + "attn_norm.weight")
            for s, n in (("q", "attn_q"), ("k", "attn_k"), ("v", "attn_v"), ("o", "attn_output")):
                w[p + s] = deq(b + n + ".weight")
                if s != "o" and b + n + ".bias" in T:
                    w[p + s + "_bias"] = deq(b + n + ".bias")
            if b + "attn_q_norm.weight" in T:
                w[p + "q_norm"] = deq(b + "attn_q_norm.weight")
                w[p + "k_norm"] = deq(b + "attn_k_norm.weight")
        elif nh > 0:
            L["attn"] = "linear"
            w[p + "attn_norm"] = deq(b + "attn_norm.weight")
            w[p + "linear"] = deq(b + "attn_output.weight")
        else:
            L["attn"] = "none"
        if ff > 0:
            w[p + "ffn_norm"] = deq(b + "ffn_norm.weight")
            for s in ("gate", "up", "down"):
                w[p + s] = deq(b + f"ffn_{s}.weight")
        layers.append(L)
    cfg = {"hidden": hidden, "eps": float(f["attention.layer_norm_rms_epsilon"]), "vocab": w["embed"].shape[0],
           "inv_freq": inv, "rope_mscale": 1.0, "rope_layout": "interleaved" if arch in ("llama", "deci") else "half",
           "layers": layers, "arch": arch}
    return cfg, w
