//! Fuzzing in CI: mutated Clusterfiles through the whole pipeline (read, validate, resolve selectors,
//! compile, plan) and mutated Kubefiles through the parser, in process, none may panic or take more
//! than 2 s; and the regression corpus of every input that once crashed, hung or blew up, through the
//! binary. `cargo run --release -p sealer-tests --example fuzz -- N K` runs long campaigns, one process
//! per input, measuring time and memory.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sealer_tests::fuzz::{clusterfile_seeds, kubefile_seeds, mutate, Rng};
use sealer_tests::{repo_root, stderr, stdout};

const BOUND: Duration = Duration::from_secs(2);

fn count(var: &str, default: usize) -> usize {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Reads, validates, resolves, compiles and plans `text`; an internal error (a graph the compiler should
/// never build) is a finding like a panic.
fn pipeline(text: &str) -> Result<(), String> {
    let Ok(parsed) = sealer_engine::parse("Clusterfile", text) else { return Ok(()) };
    let mut cf = parsed.clusterfile;
    cf.select_by_labels(&Default::default(), "v1.22.15");
    let graph = sealer_engine::compile(&cf, &sealer_engine::ImageFacts::default()).map_err(|e| e.to_string())?;
    let state = sealer_engine::State::empty(&cf.cluster.name);
    sealer_engine::plan(&graph, &state, &sealer_engine::PlanOptions::default()).map_err(|e| e.to_string())?;
    Ok(())
}

#[test]
fn mutated_clusterfiles_never_panic_and_finish_in_bounded_time() {
    let seeds = clusterfile_seeds();
    assert!(seeds.len() >= 10, "seeds: {}", seeds.len());
    let mut rng = Rng::new(11);
    let mut findings = Vec::new();
    for i in 0..count("SEALER_FUZZ_CLUSTERFILES", 300) {
        let (a, b) = (rng.below(seeds.len()), rng.below(seeds.len()));
        let input = String::from_utf8_lossy(&mutate(&seeds[a], &seeds[b], &mut rng)).into_owned();
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(|| pipeline(&input));
        let elapsed = started.elapsed();
        match outcome {
            Err(_) => findings.push(format!("input {i}: panic")),
            Ok(Err(e)) => findings.push(format!("input {i}: {e}")),
            Ok(Ok(())) if elapsed > BOUND => findings.push(format!("input {i}: {elapsed:?}")),
            Ok(Ok(())) => {}
        }
    }
    assert!(findings.is_empty(), "{findings:#?}");
}

#[test]
fn mutated_kubefiles_never_panic_and_finish_in_bounded_time() {
    let seeds = kubefile_seeds();
    let mut rng = Rng::new(7);
    let args = Default::default();
    for i in 0..count("SEALER_FUZZ_KUBEFILES", 1000) {
        let (a, b) = (rng.below(seeds.len()), rng.below(seeds.len()));
        let input = String::from_utf8_lossy(&mutate(&seeds[a], &seeds[b], &mut rng)).into_owned();
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(|| sealer_providers::image::kubefile::parse(&input, &args).map(|_| ()));
        assert!(outcome.is_ok(), "input {i} panicked:\n{input}");
        assert!(started.elapsed() < BOUND, "input {i} took {:?}", started.elapsed());
    }
}

#[test]
fn the_clusterfile_corpus_is_refused_or_planned_by_the_binary_in_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let corpus = repo_root().join("tests/fuzz-corpus/clusterfiles");
    let mut files: Vec<_> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 15);
    for file in files {
        // CPU time and peak memory, as /usr/bin/time measures them: wall time depends on the machine's load.
        let out = std::process::Command::new("/usr/bin/time")
            .args(["-f", "cost %U %S %M"])
            .arg(sealer_tests::sealer_bin())
            .args(["plan", "--refresh=false", "-f", file.to_str().unwrap()])
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let shown = format!("{}{}", stdout(&out), stderr(&out));
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}: {:?}\n{shown}", file.display(), out.status);
        let cost: Vec<f64> = shown
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("cost "))
            .unwrap()
            .split(' ')
            .map(|v| v.parse().unwrap())
            .collect();
        assert!(cost[0] + cost[1] < BOUND.as_secs_f64(), "{}: {cost:?} s of CPU", file.display());
        assert!(cost[2] < 500.0 * 1024.0, "{}: {} KiB", file.display(), cost[2]);
        assert!(!shown.contains("panicked") && !shown.contains("S3cr3t"), "{}: {shown}", file.display());
        assert!(shown.len() < 1 << 20, "{}: {} bytes of output", file.display(), shown.len());
    }
}

#[test]
fn the_kubefile_corpus_builds_nothing_from_outside_the_context_or_into_outside() {
    let (home, context, outside) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(outside.path().join("secret.txt"), "canary").unwrap();
    std::fs::write(context.path().join("a.txt"), "mine").unwrap();
    std::os::unix::fs::symlink(outside.path(), context.path().join("link_out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.txt"), context.path().join("file_link")).unwrap();
    let corpus = repo_root().join("tests/fuzz-corpus/kubefiles");
    for (i, entry) in std::fs::read_dir(&corpus).unwrap().enumerate() {
        let kubefile = entry.unwrap().path();
        let out = std::process::Command::new(sealer_tests::sealer_bin())
            .args(["build", "-t", &format!("corpus:{i}"), "-f", kubefile.to_str().unwrap(), "."])
            .current_dir(context.path())
            .env("SEALER_HOME", home.path())
            .output()
            .unwrap();
        let shown = format!("{}{}", stdout(&out), stderr(&out));
        assert!(matches!(out.status.code(), Some(0 | 1)), "{}: {shown}", kubefile.display());
        let names: Vec<_> = std::fs::read_dir(outside.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["secret.txt"], "{}: something was written outside", kubefile.display());
        assert_eq!(std::fs::read_to_string(outside.path().join("secret.txt")).unwrap(), "canary");
        let stored =
            std::process::Command::new("grep").args(["-rl", "canary", home.path().to_str().unwrap()]).output().unwrap();
        assert!(stored.stdout.is_empty(), "{}: the outside file was read into the store", kubefile.display());
    }
}
