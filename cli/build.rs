//! Puts the git revision the binary was built from into `sealer --version` (`unknown` outside a checkout),
//! and builds `sealer-relay` (the `relay/` crate, the helper hosts run to relay images to each other) for
//! the target, to be carried inside `sealer`: one binary to install or copy to an air-gapped workstation.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(&root)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=SEALER_GIT_REV={rev}");
    // A new commit changes HEAD or the ref it points at.
    // The relay is rebuilt when its sources, the workspace's profiles and dependencies, or the flags change.
    let watched = [
        ".git/HEAD",
        ".git/refs/heads",
        ".git/packed-refs",
        "relay/src",
        "relay/Cargo.toml",
        "Cargo.lock",
        "Cargo.toml",
    ];
    for path in watched {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_BUILD_DIR", "CARGO_PROFILE_RELEASE_OPT_LEVEL"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if let Err(e) = build_relay(&root) {
        // A build script's panic is how cargo reports that the build cannot go on.
        panic!("building sealer-relay for embedding failed: {e}");
    }
}

/// Why the relay could not be built.
#[derive(Debug)]
enum RelayBuildError {
    NoCrate(PathBuf),
    Env(&'static str, std::env::VarError),
    Cargo(std::io::Error),
    Exit(ExitStatus),
    Copy(PathBuf, std::io::Error),
}

impl std::fmt::Display for RelayBuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayBuildError::NoCrate(root) => {
                write!(f, "no `relay/` crate beside `cli/` in {}: build sealer from its source tree", root.display())
            }
            RelayBuildError::Env(name, e) => write!(f, "{name}: {e}"),
            RelayBuildError::Cargo(e) => write!(f, "cannot run cargo: {e}"),
            RelayBuildError::Exit(status) => write!(f, "cargo exited with {status}"),
            RelayBuildError::Copy(path, e) => write!(f, "cannot copy {}: {e}", path.display()),
        }
    }
}

fn var(name: &'static str) -> Result<String, RelayBuildError> {
    std::env::var(name).map_err(|e| RelayBuildError::Env(name, e))
}

/// `cargo build --release -p sealer-relay` into a target directory of this build's own (no lock shared
/// with the build that runs this script), for the same target, copied to `OUT_DIR/sealer-relay`.
fn build_relay(root: &Path) -> Result<(), RelayBuildError> {
    if !root.join("relay/Cargo.toml").is_file() {
        return Err(RelayBuildError::NoCrate(root.to_path_buf()));
    }
    let out = PathBuf::from(var("OUT_DIR")?);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = var("TARGET")?;
    let target_dir = out.join("relay-target");
    let mut build = Command::new(cargo);
    build
        .args(["build", "--release", "--locked", "-p", "sealer-relay", "--target", &target, "--target-dir"])
        .arg(&target_dir)
        // A build directory of its own too: with `build.build-dir` set, the outer build holds its lock.
        .env("CARGO_BUILD_BUILD_DIR", &target_dir)
        // Its output is not this script's: cargo reads `cargo:` lines from this script's stdout.
        .stdout(std::io::stderr())
        .current_dir(root);
    // Under `cargo clippy` the outer build only checks: the relay must really be compiled.
    for clippy in ["RUSTC_WORKSPACE_WRAPPER", "CLIPPY_ARGS"] {
        build.env_remove(clippy);
    }
    let status = build.status().map_err(RelayBuildError::Cargo)?;
    if !status.success() {
        return Err(RelayBuildError::Exit(status));
    }
    let built = target_dir.join(&target).join("release").join("sealer-relay");
    std::fs::copy(&built, out.join("sealer-relay")).map_err(|e| RelayBuildError::Copy(built.clone(), e))?;
    Ok(())
}
