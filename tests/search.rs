//! The layer-selection MIP: exact against exhaustive enumeration on small random and
//! real-shaped libraries, never worse than a baseline on large ones (baselines within every
//! limit), every reported solution within every limit (also
//! when time-limited), diverse solutions, multi-layer candidates, libraries written elsewhere,
//! constraint files, and bad input refused with the reason.

mod common;

use std::path::Path;

use serde_json::{Value, json};
use tessera::bench::BenchShape;
use tessera::checkpoint::LayerSpan;
use tessera::search::synthetic::{AttentionOption, FfnOption, RealShape, random_library, real_library};
use tessera::search::{
    BASELINES, Choice, ConstraintFile, Limit, Measure, Objective, Problem, SearchError, SearchInput, SearchReport,
    SearchSpec, Sense, SolveOptions, Solved, SolverKind, Status, Sweep, Verdict, parse_limits, search, search_library,
    solve, verify,
};

fn problem(map: &serde_json::Map<String, Value>) -> Problem {
    Problem::from_map(Path::new("test.json"), map).unwrap()
}

fn kl() -> Objective {
    Objective {
        key: "metrics.kl_div".into(),
        maximize: false,
    }
}

/// Every cover of the layers (single- and multi-layer candidates).
fn enumerate(problem: &Problem) -> Vec<Choice> {
    fn extend(problem: &Problem, layer: usize, prefix: &mut Choice, out: &mut Vec<Choice>) {
        if layer == problem.layers {
            out.push(prefix.clone());
            return;
        }
        for c in problem.starting_at(layer).collect::<Vec<_>>() {
            prefix.push(c);
            extend(problem, problem.candidates[c].last + 1, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    extend(problem, 0, &mut Vec::new(), &mut out);
    out
}

fn exhaustive_best(problem: &Problem, objective: &Objective, limits: &[Limit]) -> Option<f64> {
    enumerate(problem)
        .iter()
        .filter(|c| verify(problem, limits, c).is_ok())
        .map(|c| objective.value(problem, c).unwrap())
        .fold(None, |best: Option<f64>, v| {
            Some(best.map_or(v, |b| if objective.better(v, b) { v } else { b }))
        })
}

/// Limits at random shares of the parent's totals, both senses.
fn random_limits(problem: &Problem, seed: u64, count: usize) -> Vec<Limit> {
    let parent = problem.parent_choice().unwrap();
    let shares = [0.45, 0.55, 0.7, 0.62, 0.8];
    let mut limits = vec![];
    let keys = ["stats.runtime_ms", "stats.memory_mib", "stats.num_params"];
    for k in 0..count {
        let key = keys[k % keys.len()];
        let share = shares[(seed as usize + k) % shares.len()];
        let base = Limit::raw(key, Sense::AtMost, 0.0);
        let total = base.total(problem, &parent).unwrap();
        limits.push(Limit {
            bound: share * total,
            ..base
        });
    }
    limits
}

/// Solves with `options` and requires what enumeration found (`expected`, the best objective):
/// the same optimum, proven and within every limit, or no answer when there is none.
fn solve_like_enumeration(
    problem: &Problem,
    objective: &Objective,
    limits: &[Limit],
    options: &SolveOptions,
    expected: Option<f64>,
    case: &str,
) -> Option<Solved> {
    match (solve(problem, objective, limits, options, None), expected) {
        (Ok(found), Some(best)) => {
            let got = found[0].objective;
            assert!(
                (got - best).abs() <= 1e-6 * best.abs().max(1.0),
                "{case}: MIP {got} vs exhaustive {best}"
            );
            assert_eq!(found[0].status, Status::Optimal, "{case}");
            verify(problem, limits, &found[0].choice).unwrap();
            found.into_iter().next()
        }
        (Err(SearchError::Infeasible { .. }), None) => None,
        (got, expected) => panic!("{case}: {got:?} but exhaustive says {expected:?}"),
    }
}

#[test]
fn the_mip_optimum_equals_exhaustive_enumeration_on_small_libraries() {
    let mut checked = 0;
    let mut infeasible = 0;
    for seed in 0..40u64 {
        let layers = 3 + (seed % 4) as usize;
        let mut map = random_library(layers, 4, seed);
        // Every fourth library also offers a candidate replacing two layers at once.
        if seed % 4 == 0 {
            map.insert(
                "layer_1-2".into(),
                json!({ "fused": { "stats": { "runtime_ms": 0.6, "memory_mib": 9.0, "num_params": 9e5 },
                                   "metrics": { "kl_div": 0.05 } } }),
            );
        }
        let problem = problem(&map);
        let mut limits = random_limits(&problem, seed, 2 + (seed % 2) as usize);
        // A lower limit too, on some seeds: at least a share of the parent's parameters.
        if seed % 3 == 0 {
            limits.push(Limit::raw("stats.num_params", Sense::AtLeast, 0.3e6 * layers as f64));
        }
        let objective = if seed % 5 == 0 {
            // Maximising: the negated score is an accuracy-like key.
            Objective {
                key: "stats.num_params".into(),
                maximize: true,
            }
        } else {
            kl()
        };
        let expected = exhaustive_best(&problem, &objective, &limits);
        for solver in [SolverKind::Cbc, SolverKind::Microlp] {
            let options = SolveOptions {
                solver,
                ..SolveOptions::default()
            };
            let case = format!("seed {seed} {solver:?}");
            match solve_like_enumeration(&problem, &objective, &limits, &options, expected, &case) {
                Some(_) => checked += 1,
                None => infeasible += 1,
            }
        }
    }
    eprintln!("{checked} optimal solves matched enumeration, {infeasible} infeasible agreed");
    assert!(checked >= 60, "too few feasible cases: {checked}");
}

#[test]
fn the_mip_optimum_equals_exhaustive_enumeration_on_small_real_shaped_libraries() {
    // Block types with the same costs in every layer (where the exchange rows apply), sums of
    // sub-block costs, catastrophic no-ops, scores not monotone in width.
    let small = RealShape {
        attention: vec![
            AttentionOption::Kv { divisor: 1 },
            AttentionOption::Linear,
            AttentionOption::NoOp,
        ],
        ffn: vec![FfnOption::Width(1.0), FfnOption::Width(0.5), FfnOption::NoOp],
    };
    let mut checked = 0;
    // Solves the bound could not settle alone: CBC, with the exchange rows, decided them.
    let mut branched = 0;
    for seed in 0..12u64 {
        let (shape, layers) = if seed % 3 == 0 {
            (RealShape::puzzle_70b(), 3)
        } else {
            (small.clone(), 4 + (seed % 2) as usize)
        };
        let problem = problem(&real_library(layers, &shape, seed));
        for setting in BenchShape::Puzzle70b.settings() {
            let objective = Objective {
                key: setting.objective.into(),
                maximize: false,
            };
            let limits = setting.limits(&problem).unwrap();
            let expected = exhaustive_best(&problem, &objective, &limits);
            let case = format!("seed {seed} {setting:?}");
            let options = SolveOptions::default();
            if let Some(found) = solve_like_enumeration(&problem, &objective, &limits, &options, expected, &case) {
                checked += 1;
                branched += usize::from(found.variables > 0);
            }
        }
    }
    eprintln!("{checked} optimal solves matched enumeration, {branched} of them through CBC");
    assert!(checked >= 80, "too few feasible cases: {checked}");
    assert!(branched >= 10, "too few solves reached CBC: {branched}");
}

#[test]
fn on_a_real_shaped_library_every_baseline_holds_every_limit_and_the_mip_beats_them() {
    let problem = problem(&real_library(80, &RealShape::puzzle_70b(), 3));
    for setting in BenchShape::Puzzle70b.settings() {
        let objective = Objective {
            key: setting.objective.into(),
            maximize: false,
        };
        let limits = setting.limits(&problem).unwrap();
        let input = SearchInput {
            problem: problem.clone(),
            library: None,
        };
        // `search` re-checks every baseline's answer itself and fails if one breaks a limit.
        let report = search(&input, &SearchSpec::raw(objective.clone(), limits.clone())).unwrap();
        let mip = report.solutions[0].objective;
        assert_eq!(report.solutions[0].status, Status::Optimal);
        for baseline in &report.baselines {
            assert!(
                mip <= baseline.objective + 1e-9,
                "{setting:?}: {} beats the MIP",
                baseline.method
            );
        }
        for baseline in BASELINES {
            if let Some(choice) = baseline.choose(&problem, &objective, &limits, 7).unwrap() {
                verify(&problem, &limits, &choice).unwrap();
            }
        }
        assert!(
            report.baselines.len() >= 3,
            "{setting:?}: {} baselines",
            report.baselines.len()
        );
    }
}

#[test]
fn on_large_libraries_the_mip_is_never_worse_than_a_baseline_and_every_answer_holds() {
    for seed in 0..8u64 {
        let problem = problem(&random_library(40, 10, 100 + seed));
        let limits = random_limits(&problem, seed, 2);
        let found = solve(&problem, &kl(), &limits, &SolveOptions::default(), None).unwrap();
        let mip = found[0].objective;
        verify(&problem, &limits, &found[0].choice).unwrap();
        let mut compared = 0;
        for baseline in BASELINES {
            if let Some(choice) = baseline.choose(&problem, &kl(), &limits, seed).unwrap() {
                verify(&problem, &limits, &choice).unwrap();
                let value = kl().value(&problem, &choice).unwrap();
                assert!(
                    mip <= value + 1e-9,
                    "seed {seed}: {} {value} beats the MIP {mip}",
                    baseline.name()
                );
                compared += 1;
            }
        }
        assert!(compared >= 2, "seed {seed}: only {compared} baselines found a choice");
    }
}

#[test]
fn time_limited_and_gap_limited_solves_are_rechecked_and_marked() {
    let problem = problem(&random_library(80, 16, 7));
    let limits = random_limits(&problem, 1, 3);
    for options in [
        SolveOptions {
            time_limit_s: Some(0.01),
            ..SolveOptions::default()
        },
        SolveOptions {
            gap: Some(0.05),
            ..SolveOptions::default()
        },
    ] {
        match solve(&problem, &kl(), &limits, &options, None) {
            Ok(found) => {
                for s in &found {
                    verify(&problem, &limits, &s.choice).unwrap();
                }
            }
            // A stop on time with nothing feasible is reported as such, never as a solution.
            Err(SearchError::NoSolutionInTime(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[test]
fn diverse_solutions_differ_in_enough_layers_and_get_no_better() {
    let problem = problem(&random_library(12, 6, 3));
    let limits = random_limits(&problem, 2, 2);
    let options = SolveOptions {
        solutions: 4,
        min_diff: 3,
        ..SolveOptions::default()
    };
    let found = solve(&problem, &kl(), &limits, &options, None).unwrap();
    assert_eq!(found.len(), 4);
    for (i, a) in found.iter().enumerate() {
        verify(&problem, &limits, &a.choice).unwrap();
        for b in &found[..i] {
            let differ = a.choice.iter().filter(|c| !b.choice.contains(c)).count();
            assert!(differ >= 3, "{:?} vs {:?}", a.choice, b.choice);
            assert!(a.objective >= b.objective - 1e-12);
        }
    }
}

#[test]
fn a_library_written_elsewhere_is_read_and_searched() {
    // Free-text names, extra keys and nesting, as NVIDIA's public Puzzle code writes them.
    let text = r#"{
      "layer_0": {
        "block_0 attention gqa_4 ffn intermediate_14336": {"stats": {"runtime_ms": 2.0, "memory_mib": 400, "num_params": 2e8, "hw": {"gpu": "H100"}}, "metrics": {"kl_div": 0.0, "note": "parent"}},
        "attention no_op ffn intermediate_7168": {"stats": {"runtime_ms": 0.9, "memory_mib": 150, "num_params": 8e7}, "metrics": {"kl_div": 0.02}}
      },
      "layer_1": {
        "block_0 attention gqa_4 ffn intermediate_14336": {"stats": {"runtime_ms": 2.0, "memory_mib": 400, "num_params": 2e8}, "metrics": {"kl_div": 0.0}},
        "attention linear ffn no_op": {"stats": {"runtime_ms": 0.3, "memory_mib": 30, "num_params": 1.6e7}, "metrics": {"kl_div": 0.4}},
        "attention gqa_8 ffn intermediate_3584": {"stats": {"runtime_ms": 1.1, "memory_mib": 160, "num_params": 9e7}, "metrics": {"kl_div": 0.05}}
      }
    }"#;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("block_library.json");
    std::fs::write(&path, text).unwrap();
    let input = SearchInput::open(&path).unwrap();
    let spec = SearchSpec::raw(kl(), parse_limits("stats.runtime_ms<=2.5").unwrap());
    let report = search(&input, &spec).unwrap();
    let best = &report.solutions[0];
    let at = |layer| best.choice.block_at(LayerSpan::single(layer)).unwrap();
    assert_eq!(at(0), "attention no_op ffn intermediate_7168");
    // Within 2.5 ms: 0.9 + 1.1 (KL 0.07) beats 0.9 + 0.3 (KL 0.42) and 2.0 + 0.3 (KL 0.4).
    assert_eq!(at(1), "attention gqa_8 ffn intermediate_3584");
    assert!((best.objective - 0.07).abs() < 1e-12);
    assert!(best.totals["stats.runtime_ms"].as_f64().unwrap() <= 2.5);
    assert!(!input.problem.candidates[0].values.contains_key("stats.hw.gpu"));

    // solutions.json: the one writer and the one reader give back what was found, and each
    // solution is named by `PATH`, `PATH#k` or `PATH#method`. Floats come back bit for bit, also
    // one that serde_json's default (fast, not exact) parser reads one ulp off.
    let mut report = report;
    report.solutions[0].solve_ms = 1.835649;
    let file = dir.path().join("solutions.json");
    report.write(&file).unwrap();
    let back = tessera::search::SearchReport::read(&file).unwrap();
    assert_eq!(
        serde_json::to_value(&back).unwrap(),
        serde_json::to_value(&report).unwrap()
    );
    assert_eq!(back.solutions, report.solutions);
    assert_eq!(back.baselines, report.baselines);
    let pick = |text: String| {
        text.parse::<tessera::search::SolutionRef>()
            .unwrap()
            .read()
            .unwrap()
            .solution
    };
    assert_eq!(pick(file.display().to_string()), report.solutions[0]);
    assert_eq!(pick(format!("{}#0", file.display())), report.solutions[0]);
    let greedy = report.baselines.iter().find(|b| b.method == "greedy").unwrap();
    assert_eq!(&pick(format!("{}#greedy", file.display())), greedy);
    let missing = format!("{}#7", file.display())
        .parse::<tessera::search::SolutionRef>()
        .unwrap();
    assert!(missing.read().unwrap_err().to_string().contains("has no solutions[7]"));
}

#[test]
fn the_cli_prints_solutions_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("block_library.json");
    std::fs::write(&path, serde_json::to_string(&random_library(6, 4, 9)).unwrap()).unwrap();
    let out = common::tessera()
        .args(["search", "--library"])
        .arg(&path)
        .args([
            "--objective",
            "metrics.kl_div",
            "--limit",
            "stats.runtime_ms<=3.5",
            "--limit",
            "stats.memory_mib=10..40",
            "--solutions",
            "2",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let solutions = json["solutions"].as_array().unwrap();
    assert_eq!(solutions.len(), 2);
    for s in solutions {
        assert!(s["objective"].is_f64());
        assert_eq!(s["status"], "optimal");
        assert!(s["solve_ms"].as_f64().unwrap() >= 0.0);
        assert!(s["totals"]["stats.runtime_ms"].as_f64().unwrap() <= 3.5 + 1e-9);
        let memory = s["totals"]["stats.memory_mib"].as_f64().unwrap();
        assert!((10.0 - 1e-9..=40.0 + 1e-9).contains(&memory));
        assert_eq!(s["choice"].as_object().unwrap().len(), 6);
        assert!(s["choice"]["layer_0"].as_str().unwrap().starts_with("variant "));
    }

    let report = dir.path().join("report");
    let out = common::tessera()
        .args(["pareto", "--library"])
        .arg(&path)
        .args([
            "--objective",
            "metrics.kl_div",
            "--limit",
            "stats.memory_mib<=45",
            "--sweep",
            "stats.runtime_ms=2..5.5:8",
            "--out",
        ])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for file in [
        "solutions.csv",
        "solutions.parquet",
        "index.html",
        "index.md",
        "stats_runtime_ms.svg",
        "stats_runtime_ms.png",
        "stats_memory_mib.png",
    ] {
        assert!(report.join(file).is_file(), "{file} missing");
    }
    let table = std::fs::read_to_string(report.join("solutions.csv")).unwrap();
    assert!(table.starts_with("sweep stats.runtime_ms,method,rank,objective,status,solve_ms,batch_size,"));
    assert!(table.lines().filter(|l| l.contains(",mip,")).count() >= 6, "{table}");
    let png = std::fs::read(report.join("stats_runtime_ms.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
}

fn library_with(f: impl FnOnce(&mut serde_json::Map<String, Value>)) -> serde_json::Map<String, Value> {
    let mut map = random_library(3, 3, 1);
    f(&mut map);
    map
}

#[test]
fn malformed_libraries_limits_and_infeasible_targets_are_refused_with_the_reason() {
    let missing = library_with(|m| {
        m["layer_1"]["variant 1"]["stats"]
            .as_object_mut()
            .unwrap()
            .remove("runtime_ms");
    });
    let p = problem(&missing);
    let limits = parse_limits("stats.runtime_ms<=2").unwrap();
    let err = solve(&p, &kl(), &limits, &SolveOptions::default(), None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("layer_1") && err.contains("`variant 1`") && err.contains("stats.runtime_ms"),
        "{err}"
    );

    let bad_key = library_with(|m| {
        m.insert("block_7".into(), json!({}));
    });
    let err = Problem::from_map(Path::new("lib.json"), &bad_key)
        .unwrap_err()
        .to_string();
    assert!(err.contains("lib.json") && err.contains("block_7"), "{err}");

    let gap = library_with(|m| {
        m.insert("layer_5".into(), json!({ "x": { "stats": {}, "metrics": {} } }));
    });
    let err = Problem::from_map(Path::new("lib.json"), &gap).unwrap_err().to_string();
    assert!(err.contains("no variant covers layer_3"), "{err}");

    for (text, needle) in [
        ("stats.runtime_ms<2", "expected"),
        ("stats.runtime_ms<=abc", "not a number"),
        ("<=3", "no key"),
        ("stats.x=5..1", "low end"),
    ] {
        let err = parse_limits(text).unwrap_err().to_string();
        assert!(err.contains(needle) && err.contains(text), "{text}: {err}");
    }

    // Infeasible alone: even the cheapest block everywhere runs longer than 0.01 ms.
    let p = problem(&random_library(4, 3, 2));
    let limits = parse_limits("stats.runtime_ms<=0.01").unwrap();
    let err = solve(&p, &kl(), &limits, &SolveOptions::default(), None).unwrap_err();
    match &err {
        SearchError::Infeasible {
            limit,
            best,
            with_others: false,
            ..
        } => {
            assert_eq!(limit, "stats.runtime_ms");
            let cheapest: f64 = (0..4)
                .map(|l| {
                    p.starting_at(l)
                        .map(|c| p.value(c, "stats.runtime_ms").unwrap())
                        .fold(f64::INFINITY, f64::min)
                })
                .sum();
            assert!((best - cheapest).abs() < 1e-9, "{best} vs {cheapest}");
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("best value reachable"));

    // Infeasible together: each limit alone can be met; the message names one with its best
    // value while the others hold.
    let parent = p.parent_choice().unwrap();
    let runtime = Limit::raw("stats.runtime_ms", Sense::AtMost, 0.0)
        .total(&p, &parent)
        .unwrap();
    let limits = vec![
        Limit::raw("stats.runtime_ms", Sense::AtMost, 0.9 * runtime),
        Limit::raw("stats.runtime_ms", Sense::AtLeast, 0.95 * runtime),
    ];
    match solve(&p, &kl(), &limits, &SolveOptions::default(), None) {
        Err(SearchError::Infeasible {
            with_others: true,
            best,
            ..
        }) => assert!(best.is_finite()),
        other => panic!("{other:?}"),
    }
}

const CPU_FILE: &str = r#"
objective = "metrics.kl_div"
[target]
hardware = "cpu"
dtype = "f32"
[scenario]
batch_sizes = [1]
prompt_tokens = 16
generated_tokens = 16
[limits]
throughput_speedup = 1.7
"#;

#[test]
fn constraint_files_are_checked_and_name_the_key() {
    let path = Path::new("c.toml");
    ConstraintFile::parse(path, CPU_FILE).unwrap();
    for (text, needle) in [
        (
            CPU_FILE.replace("[limits]", "[limits]\nspeed = 2"),
            "unknown field `speed`",
        ),
        (
            CPU_FILE.replace("throughput_speedup = 1.7", "throughput_speedup = -2.0"),
            "limits.throughput_speedup",
        ),
        (
            CPU_FILE.replace("batch_sizes = [1]", "batch_sizes = []"),
            "scenario.batch_sizes",
        ),
        (CPU_FILE.replace("\"cpu\"", "\"tpu\""), "target.hardware"),
        (
            CPU_FILE.replace(
                "[scenario]\nbatch_sizes = [1]\nprompt_tokens = 16\ngenerated_tokens = 16\n",
                "",
            ),
            "scenario",
        ),
        (format!("raw = [\"stats.x<3\"]\n{CPU_FILE}"), "raw[0]"),
    ] {
        let err = ConstraintFile::parse(path, &text).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains(needle), "{needle}: {err}");
    }
    for file in ["cpu-2x", "h100-throughput-2x", "h100-latency-1.5x", "single-gpu-memory"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("constraints/{file}.toml"));
        ConstraintFile::read(&path).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_constraint_file_compiles_to_throughput_and_memory_limits_and_sweeps() {
    // A library profiled at the file's scenarios: the parent (v0) takes 1 ms prefill and
    // 0.1 ms per decode step in each of 4 layers.
    let mut map = serde_json::Map::new();
    for layer in 0..4 {
        let mut blocks = serde_json::Map::new();
        for (v, share, kl) in [(0, 1.0, 0.0), (1, 0.6, 0.01), (2, 0.3, 0.05), (3, 0.1, 0.3)] {
            blocks.insert(
                format!("v{v}"),
                json!({
                    "stats": {
                        "num_params": 1000.0 * share,
                        "memory_mib": share,
                        "kv_bytes_per_token_f32": 64.0 * share,
                        "runtime_ms_cpu_f32_prefill_b1_s16": share,
                        "runtime_ms_cpu_f32_decode_b1_c24": 0.1 * share,
                    },
                    "metrics": { "kl_div": kl * (1.0 + layer as f64 / 10.0) },
                }),
            );
        }
        map.insert(format!("layer_{layer}"), Value::Object(blocks));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("block_library.json");
    std::fs::write(&path, serde_json::to_string(&map).unwrap()).unwrap();
    let input = SearchInput::open(&path).unwrap();
    let file = ConstraintFile::parse(Path::new("c.toml"), CPU_FILE).unwrap();
    let spec = SearchSpec::from_file(file.clone(), SolverKind::Cbc);
    let report = search(&input, &spec).unwrap();
    let best = &report.solutions[0];
    // Parent request: 4 · (1 + 16 · 0.1) = 10.4 ms; 1.7× the throughput means ≤ 6.12 ms, a sum
    // of shares ≤ 2.35: three layers at 0.6 and the least sensitive (layer 0) at 0.3.
    let request = best.totals["request_ms@b=1"].as_f64().unwrap();
    assert!(request <= 10.4 / 1.7 + 1e-9, "{request}");
    assert_eq!(best.batch_size, Some(1));
    let names: Vec<&str> = best.choice.names();
    assert_eq!(names, ["v2", "v1", "v1", "v1"], "{best:?}");

    // A scenario the library was not profiled for names the profile command to run.
    let other = CPU_FILE.replace("generated_tokens = 16", "generated_tokens = 32");
    let spec = SearchSpec::from_file(
        ConstraintFile::parse(Path::new("c.toml"), &other).unwrap(),
        SolverKind::Cbc,
    );
    let err = search(&input, &spec).unwrap_err().to_string();
    assert!(
        err.contains("runtime_ms_cpu_f32_prefill_b1_s16") || err.contains("decode_b1_c32"),
        "{err}"
    );
    assert!(
        err.contains("tessera profile --target cpu --dtype f32 --scenario decode:b=1,c=32"),
        "{err}"
    );

    // Sweeping the speedup: more speed never costs less KL; past 10× nothing is feasible.
    let spec = SearchSpec::from_file(file, SolverKind::Cbc);
    let sweep: Sweep = "throughput_speedup=1..12:12".parse().unwrap();
    let points = tessera::search::sweep(&input, &spec, &sweep, false).unwrap();
    let objectives: Vec<f64> = points
        .iter()
        .filter_map(|p| p.report.as_ref().map(|r| r.solutions[0].objective))
        .collect();
    assert!(objectives.windows(2).all(|w| w[1] >= w[0] - 1e-12), "{objectives:?}");
    assert!(points.last().unwrap().infeasible.is_some());
    assert!(objectives.len() >= 8);
}

#[test]
fn a_real_library_is_scored_profiled_searched_and_its_child_timed() {
    use burn::prelude::Device;
    use tessera::cost::{Precision, ProfileOptions, Scenario, profile_library};
    use tessera::library::{Library, Stage};
    use tessera::score::record_scores;
    use tessera::search::check_on_cpu;

    let dir = tempfile::tempdir().unwrap();
    let lib = common::tiny_library(dir.path(), 512);
    let library = Library::open(&lib).unwrap();
    let device = Device::flex();
    let scoring = common::builtin_scoring(&library, 4);
    let rows = scoring
        .score(&library, &library.candidates(), Stage::Trained, false)
        .unwrap();
    record_scores(&lib, &rows).unwrap();
    profile_library(
        &lib,
        &ProfileOptions {
            target: "cpu".parse().unwrap(),
            precision: Precision::F32,
            scenarios: vec![
                Scenario::Prefill { batch: 1, seq: 16 },
                Scenario::Decode { batch: 1, context: 24 },
            ],
            repeats: 5,
            calibration_models: 4,
            ..ProfileOptions::default()
        },
        &device,
    )
    .unwrap();
    let file = ConstraintFile::parse(Path::new("c.toml"), CPU_FILE).unwrap();
    let input = SearchInput::open(&lib).unwrap();
    let report = search(&input, &SearchSpec::from_file(file.clone(), SolverKind::Cbc)).unwrap();
    let best = &report.solutions[0];
    assert_eq!(best.status, Status::Optimal);
    // The parent's blocks are known from the manifest, and the search had to leave them.
    let parent = input.problem.parent_choice().unwrap();
    assert_ne!(input.problem.describe(&parent).names(), best.choice.names());
    let checks = check_on_cpu(&lib, &file, &[best], 5, &device).unwrap();
    eprintln!("{checks:?}");
    let child = &checks.children[0];
    let names: Vec<String> = best
        .choice
        .iter()
        .map(|(span, name)| format!("layer_{span}: {name}"))
        .collect();
    assert_eq!(child.blocks, names);
    assert!(child.predicted_speedup >= 1.7 - 1e-9, "{checks:?}");
    assert!(checks.parents[0].measured.median_ms > 0.0 && child.measured.median_ms > 0.0);
    // Generous: a 2-layer model of width 32 is mostly fixed overhead, on a shared machine.
    assert!(child.measured_speedup > 1.0, "{checks:?}");
    let (low, high) = child.speedup_interval;
    assert!(
        low <= child.measured_speedup && child.measured_speedup <= high,
        "{checks:?}"
    );

    // A corrected prediction: the request limit's total is the raw prediction times the factor,
    // and still within the bound.
    let corrected = SearchSpec {
        request_correction: 1.25,
        ..SearchSpec::from_file(file.clone(), SolverKind::Cbc)
    };
    let slower = search(&input, &corrected).unwrap();
    let request = slower.limits.iter().find(|l| l.name == "request_ms@b=1").unwrap();
    let choice = input.problem.choice_of(&slower.solutions[0].choice).unwrap();
    let outside = input.outside("cpu", Precision::F32).unwrap();
    let raw = file.request_ms(1, &input.problem, &outside, &choice).unwrap();
    let total = slower.solutions[0].totals["request_ms@b=1"].as_f64().unwrap();
    assert!((total - 1.25 * raw).abs() <= 1e-9 * total, "{total} vs 1.25 × {raw}");
    assert!(total <= request.bound * (1.0 + 1e-7));

    // The closed loop: every round kept, each after the first searching with the correction the
    // round before it measured, no child timed twice, the report the chosen round's.
    let out = dir.path().join("solutions.json");
    let measured = SearchSpec {
        measure: Some(Measure {
            rounds: 5,
            re_solves: 2,
        }),
        ..SearchSpec::from_file(file.clone(), SolverKind::Cbc)
    };
    let looped = search_library(&lib, &measured, Some(&out), &device).unwrap();
    eprintln!("{looped}");
    let rounds = &looped.closed_loop;
    assert!((1..=3).contains(&rounds.len()), "{looped}");
    assert_eq!(rounds[0].correction, 1.0);
    for pair in rounds.windows(2) {
        let child = &pair[0].measured.children[0];
        assert_ne!(
            pair[0].verdict,
            Verdict::Within,
            "the loop stops at a child within the ask"
        );
        let implied = child.predicted_speedup / child.measured_speedup;
        assert!((pair[1].correction - implied).abs() <= 1e-12, "{looped}");
        assert_ne!(pair[1].measured.children[0].blocks, child.blocks);
    }
    let chosen = &rounds[looped.chosen_round.unwrap()];
    let names: Vec<String> = looped.solutions[0]
        .choice
        .iter()
        .map(|(span, name)| format!("layer_{span}: {name}"))
        .collect();
    assert_eq!(chosen.measured.children[0].blocks, names);
    for round in rounds {
        let (achieved, (low, high)) = (round.achieved.unwrap(), round.achieved_interval.unwrap());
        assert!(low <= achieved && achieved <= high, "{looped}");
        let asked = round.measured.children[0].measured_speedup / achieved;
        assert!((asked - 1.7).abs() < 1e-6, "asked {asked}");
    }
    let back = SearchReport::read(&out).unwrap();
    assert_eq!(back.closed_loop.len(), rounds.len());
    assert_eq!(back.chosen_round, looped.chosen_round);

    // Timing is refused before a model is built when the parent and the child will not fit.
    let constraints = dir.path().join("c.toml");
    std::fs::write(&constraints, CPU_FILE).unwrap();
    let refused = dir.path().join("refused.json");
    let output = common::tessera()
        .env("TESSERA_MEMORY_LIMIT", "64MiB")
        .args(["search", "--library"])
        .arg(&lib)
        .arg("--constraints")
        .arg(&constraints)
        .args(["--measure", "5", "--out"])
        .arg(&refused)
        .output()
        .unwrap();
    common::assert_fails_with(
        &output,
        &[
            "timing the chosen children would need about",
            "the parent and 1 children (f32)",
            "one request's KV cache",
            "only 0.06 GiB are available (TESSERA_MEMORY_LIMIT=64MiB)",
            "smaller batches",
        ],
    );
    assert!(!refused.exists(), "a refused search writes no solutions");
}

/// A library of `layers` layers whose blocks run at a fraction of the parent's time, with
/// costs for CPU_FILE's scenarios; every layer prices its blocks' KL differently.
fn timed_library(layers: usize) -> Problem {
    use tessera::cost::{Precision, Scenario, keys};
    let prefill = keys::runtime_ms("cpu", Precision::F32, &Scenario::Prefill { batch: 1, seq: 16 });
    let decode = keys::runtime_ms("cpu", Precision::F32, &Scenario::Decode { batch: 1, context: 24 });
    let mut map = serde_json::Map::new();
    for layer in 0..layers {
        let mut blocks = serde_json::Map::new();
        for step in 0..=10 {
            let width = 1.0 - 0.1 * step as f64;
            blocks.insert(
                format!("width {width:.1}"),
                json!({
                    "stats": { prefill.clone(): 1.0 * width, decode.clone(): 0.1 * width, "num_params": 1e3 * width },
                    "metrics": { "kl_div": (1.0 - width).powi(2) * (1.0 + 0.37 * layer as f64) },
                }),
            );
        }
        map.insert(format!("layer_{layer}"), Value::Object(blocks));
    }
    problem(&map)
        .with_parent_names(&vec!["width 1.0".to_string(); layers])
        .unwrap()
}

#[test]
fn the_closed_loop_corrects_the_prediction_until_the_measured_child_is_within_the_ask() {
    use tessera::cost::measure::Timing;
    use tessera::search::{ChildCheck, ChildChecks, ParentTiming, close_loop};

    let file = ConstraintFile::parse(Path::new("c.toml"), CPU_FILE).unwrap();
    let input = SearchInput {
        problem: timed_library(6),
        library: None,
    };
    let outside = input.outside("cpu", tessera::cost::Precision::F32).unwrap();
    let parent_ms = file
        .request_ms(1, &input.problem, &outside, &input.problem.parent_choice().unwrap())
        .unwrap();
    let timing = |ms: f64| Timing {
        median_ms: ms,
        min_ms: ms,
        max_ms: ms,
        runs: 9,
    };
    // This "machine" runs every child `truth` times slower than predicted and the parent as
    // predicted, measured to within ±1%.
    let machine = |truth: f64, best: &tessera::search::SolutionReport| -> Result<ChildChecks, SearchError> {
        let choice = input.problem.choice_of(&best.choice)?;
        let predicted_ms = file.request_ms(1, &input.problem, &outside, &choice)?;
        let ms = truth * predicted_ms;
        let speedup = parent_ms / ms;
        Ok(ChildChecks {
            parents: vec![ParentTiming {
                batch_size: 1,
                predicted_ms: parent_ms,
                measured: timing(parent_ms),
            }],
            children: vec![ChildCheck {
                blocks: best.choice.iter().map(|(s, n)| format!("layer_{s}: {n}")).collect(),
                batch_size: 1,
                predicted_ms,
                measured: timing(ms),
                error_pct: 100.0 * (predicted_ms - ms) / ms,
                predicted_speedup: parent_ms / predicted_ms,
                measured_speedup: speedup,
                speedup_interval: (0.99 * speedup, 1.01 * speedup),
                ms_interval: (0.99 * ms, 1.01 * ms),
            }],
            mean_abs_error_pct: 0.0,
        })
    };
    for truth in [1.15, 0.8] {
        let mut timed = 0;
        let mut time = |best: &tessera::search::SolutionReport| {
            timed += 1;
            machine(truth, best)
        };
        let spec = SearchSpec::from_file(file.clone(), SolverKind::Cbc);
        let report = close_loop(&input, &spec, &file, 3, &mut time).unwrap();
        let rounds = &report.closed_loop;
        let first = if truth > 1.0 {
            Verdict::TooSlow
        } else {
            Verdict::TooFast
        };
        assert_eq!(rounds[0].verdict, first, "truth {truth}");
        assert!(rounds.len() >= 2 && rounds.len() == timed, "truth {truth}");
        assert!(
            (rounds[1].correction - truth).abs() < 1e-9,
            "truth {truth}: {}",
            rounds[1].correction
        );
        let chosen = &rounds[report.chosen_round.unwrap()];
        assert_eq!(chosen.verdict, Verdict::Within, "truth {truth}");
        let achieved = chosen.achieved.unwrap();
        assert!((0.99..=1.10).contains(&achieved), "truth {truth}: {achieved}");
        // Faster than asked by more than 10% cost objective the loop then bought back.
        if truth < 1.0 {
            assert!(chosen.objective < rounds[0].objective, "truth {truth}");
        }
        let choice = input.problem.choice_of(&report.solutions[0].choice).unwrap();
        let measured = truth * file.request_ms(1, &input.problem, &outside, &choice).unwrap();
        assert!(parent_ms / measured >= 0.99 * 1.7, "truth {truth}");
    }
    // A file that asks no request time: the child is timed once, nothing is corrected, and the
    // report still goes to JSON and back.
    let memory_only = ConstraintFile::parse(
        Path::new("m.toml"),
        &CPU_FILE.replace("throughput_speedup = 1.7", "max_params = 4000"),
    )
    .unwrap();
    let spec = SearchSpec::from_file(memory_only.clone(), SolverKind::Cbc);
    let report = close_loop(&input, &spec, &memory_only, 3, &mut |best| machine(1.15, best)).unwrap();
    assert_eq!(report.closed_loop.len(), 1);
    assert_eq!(report.closed_loop[0].verdict, Verdict::NothingAsked);
    assert_eq!(report.closed_loop[0].achieved, None);
    let dir = tempfile::tempdir().unwrap();
    report.write(&dir.path().join("s.json")).unwrap();
    let back = SearchReport::read(&dir.path().join("s.json")).unwrap();
    assert_eq!(back.closed_loop[0].verdict, Verdict::NothingAsked);
}
