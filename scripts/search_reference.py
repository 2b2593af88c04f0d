#!/usr/bin/env python3
"""python-mip (CBC) reference for `tessera bench search`, in one run: tessera generates the
libraries and instances, searches each (MIP + baselines, every answer re-checked) and times a
Pareto sweep; this script then solves the very same instances with python-mip (binary x per
block, one block per layer, every limit, the objective minimised; model build + optimize,
median over the same number of repeats) and the same sweep reusing one python-mip model
between points (only the swept limit's right-hand side changes), and prints both side by side
with the ratios and every optimum compared. With --processes it also times each instance as a
user runs it: one `tessera search --library ... --json` process each.

    python3 -m venv /work/mipenv && /work/mipenv/bin/pip install mip
    /work/mipenv/bin/python scripts/search_reference.py --tessera target/release/tessera \
        --shape puzzle-70b --layers 80 --libraries 1 --processes

Outside the test suite; it never runs in CI. Exits non-zero if tessera's optimum is worse than
python-mip's anywhere (more than 1e-6 relative).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import mip


def build(library, objective, limits):
    """One python-mip model; returns (model, {limit key: constraint})."""
    model = mip.Model(sense=mip.MINIMIZE, solver_name=mip.CBC)
    model.verbose = 0
    model.threads = 1
    blocks = []
    for variants in library.values():
        row = [(model.add_var(var_type=mip.BINARY), entry) for entry in variants.values()]
        model += mip.xsum(v for v, _ in row) == 1
        blocks.extend(row)

    def value(entry, key):
        group, name = key.split(".", 1)
        return entry[group][name]

    model.objective = mip.xsum(value(e, objective) * v for v, e in blocks)
    constraints = {}
    for key, bound in limits:
        constraints[key] = model.add_constr(mip.xsum(value(e, key) * v for v, e in blocks) <= bound)
    return model, constraints


def solve(library, objective, limits):
    """Builds and solves one instance; returns (objective value, seconds, status)."""
    start = time.perf_counter()
    model, _ = build(library, objective, limits)
    status = model.optimize()
    return model.objective_value, time.perf_counter() - start, status


def relative(a, b):
    return (a - b) / max(abs(b), 1e-12)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tessera", default="target/release/tessera")
    parser.add_argument("--shape", default="random", choices=["random", "puzzle-70b", "paper"])
    parser.add_argument("--layers", type=int, default=80)
    parser.add_argument("--variants", type=int, default=16)
    parser.add_argument("--libraries", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep-points", type=int, default=50)
    parser.add_argument("--processes", action="store_true",
                        help="also time one `tessera search` process per instance")
    args = parser.parse_args()
    libraries = args.libraries if args.libraries is not None else (21 if args.shape == "random" else 1)
    with tempfile.TemporaryDirectory() as dump:
        command = [args.tessera, "bench", "search", "--shape", args.shape, "--layers", str(args.layers),
                   "--variants", str(args.variants), "--libraries", str(libraries),
                   "--repeats", str(args.repeats), "--sweep-points", str(args.sweep_points),
                   "--dump", dump, "--json"]
        ours = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)[0]
        plan = json.load(open(os.path.join(dump, "instances.json")))
        libs = {}

        def library(seed):
            if seed not in libs:
                libs[seed] = json.load(open(os.path.join(dump, f"library_{seed}.json")))
            return libs[seed]

        rows = []
        for mine, instance in zip(ours["instances"], plan["instances"]):
            lib = library(instance["library"])
            times, value, status = [], None, None
            for _ in range(args.repeats):
                value, seconds, status = solve(lib, instance["objective"], instance["limits"])
                times.append(seconds * 1e3)
            process_ms = None
            if args.processes:
                cmd = [args.tessera, "search", "--library", os.path.join(dump, f"library_{instance['library']}.json"),
                       "--objective", instance["objective"], "--json"]
                for key, bound in instance["limits"]:
                    cmd += ["--limit", f"{key}<={bound!r}"]
                start = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                process_ms = (time.perf_counter() - start) * 1e3
            rows.append((mine, instance, statistics.median(times), value, status, process_ms))

        sweep = plan["sweep"]
        lib = json.load(open(os.path.join(dump, "library_sweep.json")))
        model, constraints = build(lib, sweep["objective"], sweep["limits"])
        swept = constraints[sweep["key"]]
        sweep_values = []
        start = time.perf_counter()
        for bound in sweep["values"]:
            swept.rhs = bound
            status = model.optimize()
            sweep_values.append(model.objective_value if status in (mip.OptimizationStatus.OPTIMAL,
                                                                     mip.OptimizationStatus.FEASIBLE) else None)
        py_sweep_s = time.perf_counter() - start

    print(f"{ours['shape']}: {ours['layers']} layers x {ours['blocks_per_layer']} blocks, "
          f"{len(rows)} instances, medians of {args.repeats} runs, baselines {'on' if ours['baselines'] else 'off'}")
    header = (f"{'lib':>3} {'objective':<16} {'runtime<=':>10}  {'tessera ms':>10} {'(MIP ms)':>9} "
              f"{'python-mip ms':>13} {'ratio':>7}  {'tessera optimum':>17} {'python-mip':>17} {'rel. diff':>10}")
    if args.processes:
        header += f" {'process ms':>10}"
    print(header)
    worse = 0
    for mine, instance, py_ms, py_value, status, process_ms in rows:
        diff = relative(mine["optimum"], py_value) if py_value is not None else float("nan")
        if py_value is not None and diff > 1e-6:
            worse += 1
        line = (f"{instance['library']:>3} {instance['objective']:<16} {instance['limits'][0][1]:>10.3f}  "
                f"{mine['search_ms']:>10.2f} {mine['mip_ms']:>9.2f} {py_ms:>13.1f} {py_ms / mine['search_ms']:>6.1f}x  "
                f"{mine['optimum']:>17.9f} {py_value if py_value is not None else float('nan'):>17.9f} {diff:>10.2e}")
        if args.processes:
            line += f" {process_ms:>10.1f}"
        print(line + ("" if status == mip.OptimizationStatus.OPTIMAL else f"  python-mip: {status.name}"))
    ours_total = sum(m["search_ms"] for m, *_ in rows)
    py_total = sum(r[2] for r in rows)
    print(f"total: tessera {ours_total:.1f} ms, python-mip {py_total:.1f} ms: {py_total / ours_total:.1f}x")
    if args.processes:
        process_total = sum(r[5] for r in rows)
        print(f"as processes: tessera {process_total:.1f} ms for {len(rows)} `tessera search` runs "
              f"({py_total / process_total:.1f}x python-mip's in-process total)")
    sweep_worse = sum(1 for a, b in zip(ours["sweep_optima"], sweep_values)
                      if a is not None and b is not None and relative(a, b) > 1e-6)
    mismatch = sum(1 for a, b in zip(ours["sweep_optima"], sweep_values) if (a is None) != (b is None))
    print(f"{args.sweep_points}-point sweep of {sweep['key']}: tessera {ours['sweep_s']:.3f} s, "
          f"python-mip (one model, right-hand side changed) {py_sweep_s:.3f} s: {py_sweep_s / ours['sweep_s']:.1f}x; "
          f"tessera worse at {sweep_worse} points, feasibility differs at {mismatch}")
    print(f"tessera worse than python-mip (>1e-6 relative) on {worse} of {len(rows)} instances")
    sys.exit(1 if worse or sweep_worse or mismatch else 0)


if __name__ == "__main__":
    main()
