//! Long fuzzing campaigns, one `sealer` process per input so that an abort or a runaway is seen and
//! measured: `cargo run --release -p sealer-tests --example fuzz -- CLUSTERFILES KUBEFILES [SEED]`.
//! Clusterfiles go through `sealer plan --refresh=false`; Kubefiles through `sealer build` in a context
//! holding links out of it, with a canary outside that must stay untouched and unread. Mutated `RUN`
//! lines are dropped: RUN executes on the build host by design. Prints one line of counts; exits 1 on
//! any panic, abort, run over 2 s or over 500 MB, or canary touched.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use sealer_tests::fuzz::{clusterfile_seeds, kubefile_seeds, mutate, Rng};

#[derive(Default, Debug)]
struct Tally {
    runs: usize,
    refused: usize,
    panics: usize,
    aborts: usize,
    over_time: usize,
    over_memory: usize,
    escapes: usize,
    max_seconds: f64,
    max_kib: u64,
}

/// Runs `sealer ARGS` under /usr/bin/time with a hard 10 s limit and tallies how it ended.
fn run(tally: &mut Tally, cwd: &Path, home: &Path, args: &[&str], keep: &Path, input: &[u8]) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "cost %e %M", "timeout", "-s", "KILL", "10"])
        .arg(sealer_tests::sealer_release_bin())
        .args(args)
        .current_dir(cwd)
        .env("SEALER_HOME", home)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let cost = stderr.lines().rev().find_map(|l| l.strip_prefix("cost ")).unwrap_or("99 0");
    let mut cost = cost.split(' ');
    let seconds: f64 = cost.next().and_then(|v| v.parse().ok()).unwrap_or(99.0);
    let kib: u64 = cost.next().and_then(|v| v.parse().ok()).unwrap_or(0);
    tally.runs += 1;
    tally.max_seconds = tally.max_seconds.max(seconds);
    tally.max_kib = tally.max_kib.max(kib);
    let mut finding = None;
    if stderr.contains("panicked") {
        tally.panics += 1;
        finding = Some("panic");
    } else if !matches!(out.status.code(), Some(0 | 1)) || stderr.contains("terminated by signal") {
        tally.aborts += 1;
        finding = Some("abort");
    }
    if seconds > 2.0 {
        tally.over_time += 1;
        finding = Some("time");
    }
    if kib > 500 * 1024 {
        tally.over_memory += 1;
        finding = Some("memory");
    }
    if out.status.code() == Some(1) {
        tally.refused += 1;
    }
    if let Some(kind) = finding {
        let name = keep.join(format!("{kind}-{}", tally.runs));
        std::fs::write(&name, input).unwrap();
        eprintln!("finding ({kind}): kept as {}", name.display());
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let (clusterfiles, kubefiles) = (args.first().copied().unwrap_or(10_000), args.get(1).copied().unwrap_or(3_000));
    let mut rng = Rng::new(args.get(2).copied().unwrap_or(1) as u64);
    let keep = tempfile::Builder::new().prefix("sealer-fuzz-findings-").tempdir().unwrap().keep();
    let work = tempfile::tempdir().unwrap();
    let home = work.path().join("home");
    let started = std::time::Instant::now();

    let mut plans = Tally::default();
    let seeds = clusterfile_seeds();
    for _ in 0..clusterfiles {
        let (a, b) = (rng.below(seeds.len()), rng.below(seeds.len()));
        let input = mutate(&seeds[a], &seeds[b], &mut rng);
        let file = work.path().join("Clusterfile");
        std::fs::write(&file, &input).unwrap();
        run(&mut plans, work.path(), &home, &["plan", "--refresh=false", "-f", "Clusterfile"], &keep, &input);
    }

    let mut builds = Tally::default();
    let (context, outside) = (work.path().join("context"), work.path().join("outside"));
    std::fs::create_dir_all(&context).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("secret.txt"), "canary-8f3e").unwrap();
    std::fs::write(context.join("a.txt"), "mine").unwrap();
    std::os::unix::fs::symlink(&outside, context.join("link_out")).unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), context.join("file_link")).unwrap();
    let seeds = kubefile_seeds();
    for i in 0..kubefiles {
        let (a, b) = (rng.below(seeds.len()), rng.below(seeds.len()));
        let input = mutate(&seeds[a], &seeds[b], &mut rng);
        let text: String = String::from_utf8_lossy(&input)
            .lines()
            .filter(|l| !l.trim_start().to_ascii_uppercase().starts_with("RUN"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(context.join("Kubefile"), &text).unwrap();
        run(&mut builds, &context, &home, &["build", "-t", &format!("fuzz:{i}"), "."], &keep, text.as_bytes());
        let outside_now: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
        let read_in =
            home.exists() && Command::new("grep").args(["-rlq", "canary-8f3e"]).arg(&home).status().unwrap().success();
        if outside_now.len() != 1
            || std::fs::read_to_string(outside.join("secret.txt")).unwrap() != "canary-8f3e"
            || read_in
        {
            builds.escapes += 1;
            eprintln!("finding (escape): {text}");
        }
        if i % 200 == 199 {
            let _ = std::fs::remove_dir_all(&home);
        }
    }
    println!(
        "clusterfiles: {} runs, {} refused, {} panics, {} aborts, {} over 2 s, {} over 500 MB, slowest {:.2} s, largest {} MB",
        plans.runs, plans.refused, plans.panics, plans.aborts, plans.over_time, plans.over_memory, plans.max_seconds,
        plans.max_kib / 1024
    );
    println!(
        "kubefiles: {} runs, {} refused, {} panics, {} aborts, {} over 2 s, {} over 500 MB, {} escapes, slowest {:.2} s, largest {} MB",
        builds.runs, builds.refused, builds.panics, builds.aborts, builds.over_time, builds.over_memory, builds.escapes,
        builds.max_seconds, builds.max_kib / 1024
    );
    println!("{:.0} s in all; findings (if any) in {}", started.elapsed().as_secs_f64(), keep.display());
    let bad = |t: &Tally| t.panics + t.aborts + t.over_time + t.over_memory + t.escapes;
    if bad(&plans) + bad(&builds) > 0 {
        std::process::exit(1);
    }
}
