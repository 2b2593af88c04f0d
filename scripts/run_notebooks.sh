#!/usr/bin/env bash
# Executes notebooks/0*.ipynb headless with the evcxr Rust kernel, in order, from a clean
# notebooks/work/, writing each notebook back with its outputs; fails at the first cell error.
# evcxr reports a cell's error (a `?` that fails, a panic) as output on stderr, not as a failed
# cell, so nbconvert alone would pass it: every cell's outputs are checked for stderr text or an
# error. Installs what it needs when missing: evcxr_jupyter (crates.io), and Jupyter with
# nbconvert (PyPI).
#
#   scripts/run_notebooks.sh
#
# The first run compiles tessera and its dependencies for evcxr (in target/evcxr/, kept between
# runs and shared by the notebooks): about 15 minutes on 2 cores; the notebooks themselves then
# take about 5 minutes.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
command -v evcxr_jupyter >/dev/null || cargo install evcxr_jupyter --version 0.22.0 --locked
jupyter kernelspec list 2>/dev/null | grep -qw rust || evcxr_jupyter --install
python3 -c "import nbconvert, jupyter_client" 2>/dev/null || pip install --quiet jupyter nbconvert
export EVCXR_TMPDIR="${EVCXR_TMPDIR:-$root/target/evcxr}"
mkdir -p "$EVCXR_TMPDIR"
cd "$root/notebooks"
rm -rf work
for notebook in 01_quickstart 02_constraints 03_fusion; do
  echo "== $notebook" >&2
  start=$(date +%s)
  jupyter nbconvert --to notebook --execute --inplace \
    --ExecutePreprocessor.kernel_name=rust --ExecutePreprocessor.timeout=3600 "$notebook.ipynb"
  python3 - "$notebook.ipynb" <<'PY'
import json, sys
path = sys.argv[1]
for number, cell in enumerate(json.load(open(path))["cells"], 1):
    for output in cell.get("outputs", []):
        failed = output["output_type"] == "error" or (
            output["output_type"] == "stream" and output["name"] == "stderr" and "".join(output["text"]).strip())
        if failed:
            text = "".join(output.get("text", [])) or output.get("evalue", "")
            sys.exit(f"{path}: cell {number} failed:\n{''.join(cell['source'])}\n---\n{text}")
PY
  echo "== $notebook: $(( $(date +%s) - start )) s" >&2
done
