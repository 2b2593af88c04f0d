"""Cross-check a GGUF file (e.g. a tessera export) against llama.cpp and a numpy forward
(outside the test suite).

    PYREF=/work/pyref   # llama.cpp built from the llama-cpp-python 0.3.36 sdist, venv5 (see scripts/make_fixtures.py)
    tessera export --model parent.gguf ... --format gguf --dtype f32 --out child.gguf
    tessera eval nll --model child.gguf --ids ids.txt
    $PYREF/venv5/bin/python scripts/llamacpp_crosscheck.py child.gguf ids.txt [--no-numpy]

IDS_FILE: one sequence per non-empty line, whitespace-separated ids, each evaluated as given.
Prints JSON: llama.cpp's mean NLL over all predictions (llama-cpp-python bound to the llama.cpp
build, logits_all, float32 logits, float64 log-softmax), the same from scripts/np_llama_ref.py
(float64 over gguf-py's dequantised weights: the exact-arithmetic figure, since llama.cpp's
quantised matmuls also quantise activations), and llama.cpp's greedy continuation of the first
sequence's first id.

llama.cpp's `deci` graph (src/models/deci.cpp) skips a layer whose feed_forward_length is 0
entirely (`continue` before the residual), so a layer with attention but no FFN loses its
attention there; the numpy reference keeps it (HF DeciLM semantics). A difference between the
two on such a file is that, not a reader bug.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

PYREF = Path(os.environ.get("PYREF", "/work/pyref"))
os.environ.setdefault("LLAMA_CPP_LIB_PATH", str(PYREF / "llama.cpp" / "build" / "bin"))
sys.dont_write_bytecode = True  # no scripts/__pycache__ in the work tree
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf")
    ap.add_argument("ids")
    ap.add_argument("--no-numpy", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    seqs = [[int(x) for x in line.split()] for line in Path(a.ids).read_text().splitlines() if line.strip()]
    from llama_cpp import Llama
    n_ctx = max(len(s) for s in seqs) + 8
    llm = Llama(model_path=a.gguf, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, logits_all=True,
                n_threads=a.threads, verbose=False, seed=0)
    import np_llama_ref as ref
    total, count, per = 0.0, 0, []
    for ids in seqs:
        llm.reset()
        llm.eval(ids)
        s, c = ref.nll_sum(np.array(llm.scores[:len(ids)], dtype=np.float64), ids)
        total, count = total + s, count + c
        per.append(s / c)
    llm.reset()
    llm.eval(seqs[0][:1])
    greedy = []
    for _ in range(len(seqs[0]) - 1):
        nxt = int(np.argmax(llm.scores[llm.n_tokens - 1]))
        greedy.append(nxt)
        llm.eval([nxt])
    out = {"llama_cpp_mean_nll": total / count, "tokens": count, "llama_cpp_per_sequence_mean_nll": per,
           "llama_cpp_greedy_from_first_id": seqs[0][:1] + greedy}
    del llm
    if not a.no_numpy:
        cfg, w = ref.from_gguf(a.gguf)
        total, count = 0.0, 0
        for ids in seqs:
            s, c = ref.nll_sum(ref.forward(cfg, w, ids), ids)
            total, count = total + s, count + c
        out["numpy_mean_nll"] = total / count
    print(json.dumps(out))


if __name__ == "__main__":
    main()
