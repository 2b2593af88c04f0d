#!/usr/bin/env python3
"""python-mip (CBC) reference for `tessera bench search`: solves the very same random
libraries (binary x per block, one block per layer, two resource limits, KL minimised) and
prints the median time per solve to optimality and the time of the same Pareto sweep, next to
tessera's figures from one run.

    python3 -m venv /tmp/mipenv && /tmp/mipenv/bin/pip install mip
    /tmp/mipenv/bin/python scripts/search_reference.py --tessera target/release/tessera

Outside the test suite; it never runs in CI.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import mip


def solve(library, limits, bounds=None):
    """Builds and solves one MIP; returns (objective, seconds, status)."""
    start = time.perf_counter()
    model = mip.Model(sense=mip.MINIMIZE, solver_name=mip.CBC)
    model.verbose = 0
    model.threads = 1
    blocks = []
    for layer, variants in library.items():
        row = []
        for name, entry in variants.items():
            row.append((model.add_var(var_type=mip.BINARY), entry))
        model += mip.xsum(v for v, _ in row) == 1
        blocks.extend(row)
    model.objective = mip.xsum(e["metrics"]["kl_div"] * v for v, e in blocks)
    for (key, bound) in (bounds or limits):
        group, name = key.split(".", 1)
        model += mip.xsum(e[group][name] * v for v, e in blocks) <= bound
    status = model.optimize()
    seconds = time.perf_counter() - start
    return model.objective_value, seconds, status


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", default="target/release/tessera")
    parser.add_argument("--libraries", type=int, default=21)
    parser.add_argument("--sweep-points", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as dump:
        out = subprocess.run(
            [args.tessera, "bench", "search", "--libraries", str(args.libraries),
             "--sweep-points", str(args.sweep_points), "--dump", dump, "--json"],
            check=True, capture_output=True, text=True).stdout
        ours = json.loads(out)[0]
        times, objectives = [], []
        for seed in range(args.libraries):
            library = json.load(open(os.path.join(dump, f"library_{seed}.json")))
            limits = json.load(open(os.path.join(dump, f"limits_{seed}.json")))
            objective, seconds, status = solve(library, limits)
            assert status == mip.OptimizationStatus.OPTIMAL, status
            times.append(seconds * 1e3)
            objectives.append(objective)
        library = json.load(open(os.path.join(dump, "library_sweep.json")))
        limits = json.load(open(os.path.join(dump, "limits_sweep.json")))
        runtime_bound = limits[0][1]
        start = time.perf_counter()
        for i in range(args.sweep_points):
            share = 0.6 + (1.6 - 0.6) * i / max(args.sweep_points - 1, 1)
            solve(library, limits, [(limits[0][0], runtime_bound * share), limits[1]])
        sweep_s = time.perf_counter() - start
    print(f"{'':24} {'tessera (good_lp + CBC)':>26} {'python-mip + CBC':>20}")
    print(f"{'median ms per solve':24} {ours['median_solve_ms']:>26.1f} {statistics.median(times):>20.1f}")
    print(f"{'max ms per solve':24} {ours['max_solve_ms']:>26.1f} {max(times):>20.1f}")
    print(f"{str(args.sweep_points) + '-point sweep, s':24} {ours['sweep_s']:>26.2f} {sweep_s:>20.2f}")


if __name__ == "__main__":
    main()
