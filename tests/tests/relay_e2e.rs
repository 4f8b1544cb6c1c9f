//! The image relay on real sshd hosts: the workstation sends about one copy of the image whatever the
//! number of hosts, a corrupted relay is caught by the digest and its fetcher gets the copy again, a
//! host that cannot reach its peers gets a direct copy (and the apply says so), and no relay outlives
//! the apply. `SEALER_RELAY_HOSTS` sets the number of hosts (default 8).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use sealer_tests::{ok, sealer_at, stdout, testbed_available, Testbed};

const PAYLOAD_MB: usize = 12;

fn hosts() -> usize {
    std::env::var("SEALER_RELAY_HOSTS").ok().and_then(|n| n.parse().ok()).unwrap_or(8)
}

/// Bytes the workstation has sent into the testbed's bridge.
fn egress(tb: &Testbed) -> u64 {
    let path = format!("/sys/class/net/sbr{}/statistics/tx_bytes", tb.id);
    std::fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

/// A cluster image of `PAYLOAD_MB` random bytes in one file (a new one on every call).
fn build(home: &Path, dir: &Path, tag: &str) -> String {
    let ctx = dir.join(format!("ctx-{tag}"));
    std::fs::create_dir_all(ctx.join("payload")).unwrap();
    let mut blob = vec![0u8; PAYLOAD_MB << 20];
    std::fs::File::open("/dev/urandom").and_then(|mut f| std::io::Read::read_exact(&mut f, &mut blob)).unwrap();
    std::fs::write(ctx.join("payload/blob.bin"), &blob).unwrap();
    std::fs::write(ctx.join("Kubefile"), "FROM scratch\nCOPY payload payload\n").unwrap();
    let name = format!("relay/payload:{tag}");
    ok(&sealer_at(home, dir, &["build", "-t", &name, ctx.to_str().unwrap()]));
    let out = std::process::Command::new("sha256sum").arg(ctx.join("payload/blob.bin")).output().unwrap();
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap().to_string()
}

fn clusterfile(tb: &Testbed, image: &str) -> String {
    let ips: Vec<String> = tb.ips.iter().map(|ip| ip.to_string()).collect();
    format!(
        "apiVersion: sealer.cloud/v2\nkind: Cluster\nmetadata: {{name: relay}}\nspec:\n  image: {image}\n  \
         ssh: {{pk: {}}}\n  hosts:\n    - {{ips: [{}], roles: [master]}}\n",
        tb.key.display(),
        ips.join(", ")
    )
}

/// `apply --auto-approve` of the image resources of every host (and what they depend on).
fn apply_images(tb: &Testbed, home: &Path, dir: &Path, env: &[(&str, &str)], json: bool) -> std::process::Output {
    let mut args = vec!["apply".to_string(), "--auto-approve".to_string()];
    if json {
        args.push("--json".to_string());
    }
    for ip in &tb.ips {
        args.extend(["--target".to_string(), format!("image.{ip}")]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut command = std::process::Command::new(sealer_tests::sealer_bin());
    command.args(&args).current_dir(dir).env("SEALER_HOME", home).env("NO_COLOR", "1").env_remove("SEALER_STATE");
    for (k, v) in env {
        command.env(k, v);
    }
    // Each line of output is stamped when it arrives: how long a fallback took shows in the events.
    command.stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let started = std::time::Instant::now();
    let stdout = child.stdout.take().unwrap();
    let mut stamped = String::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.unwrap();
        stamped += &format!("{:.3} {line}\n", started.elapsed().as_secs_f64());
    }
    let mut output = child.wait_with_output().unwrap();
    output.stdout = stamped.into_bytes();
    output
}

/// The output's lines without their arrival time, and the times.
fn unstamped(out: &str) -> (String, Vec<(f64, &str)>) {
    let stamped: Vec<(f64, &str)> = out
        .lines()
        .map(|l| {
            let (t, line) = l.split_once(' ').unwrap();
            (t.parse().unwrap(), line)
        })
        .collect();
    (stamped.iter().map(|(_, l)| format!("{l}\n")).collect(), stamped)
}

/// Every host holds the payload with `sha`, and nothing of the relay is left: no process, no listener
/// beyond sshd, no copy.
fn assert_converged_and_clean(tb: &Testbed, sha: &str) {
    for i in 0..tb.ips.len() {
        let out = tb.exec(
            i,
            "sha256sum /var/lib/sealer/relay/rootfs/payload/blob.bin | cut -d' ' -f1; \
             ps -eo comm | grep -c '^sealer-relay'; ss -Hltn | grep -vc ':22 '; \
             ls -a /var/lib/sealer/relay | grep -c relay",
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.first(), Some(&sha), "host {} holds another payload: {text}", tb.ips[i]);
        assert_eq!(&lines[1..], ["0", "0", "0"], "a relay outlived the apply on {}: {text}", tb.ips[i]);
    }
}

#[test]
fn one_copy_from_the_workstation_corrupt_relays_refetched_isolated_hosts_copied_directly() {
    if !testbed_available() {
        return;
    }
    let n = hosts();
    let tb = Testbed::up(n);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sha = build(&home, dir.path(), "1");
    let clusterfile_path = dir.path().join("Clusterfile");
    std::fs::write(&clusterfile_path, clusterfile(&tb, "relay/payload:1")).unwrap();

    // The plan says who seeds and who relays.
    let plan = ok(&sealer_at(&home, dir.path(), &["plan"]));
    assert_eq!(plan.matches("seed: copied from the workstation").count(), 1, "{plan}");
    assert_eq!(plan.matches("relayed from a host that holds the copy").count(), n - 1, "{plan}");
    // Of those, only the first few serve the copy on: most hosts fetch and install, with no relay.
    let relaying = sealer_providers::cluster::relaying_hosts(n);
    assert_eq!(plan.matches("then relayed on to other hosts").count(), relaying - 1, "{plan}");

    // The first apply, with the first relayed host's copy corrupted once it serves (the test hook).
    let before = egress(&tb);
    let first = apply_images(&tb, &home, dir.path(), &[("SEALER_TEST_CORRUPT_RELAY", "1")], false);
    let sent = egress(&tb) - before;
    let out = unstamped(&stdout(&first)).0;
    assert!(first.status.success(), "{out}\n{}", String::from_utf8_lossy(&first.stderr));
    let image = (PAYLOAD_MB << 20) as u64;
    // 1.1 × the image, everything included (the relay helper, every ssh handshake and command), and
    // 64 KiB of control traffic for every host beyond 8.
    let limit = image + image / 10 + 64 * 1024 * n.saturating_sub(8) as u64;
    assert!(sent <= limit, "the workstation sent {sent} bytes for a {image}-byte image to {n} hosts:\n{out}");
    assert_eq!(out.matches("MiB copied from the workstation").count(), 1, "one seed:\n{out}");
    // The seed is the host the plan named.
    let planned = tb
        .ips
        .iter()
        .find(|ip| plan.contains(&format!("# image.{ip} will be created\n  # (seed: copied from the workstation")))
        .expect("the plan names a seed");
    assert!(out.contains(&format!("image.{planned}: 12.00 MiB copied from the workstation")), "{plan}\n{out}");
    assert_eq!(out.matches(" relayed from 10.").count(), n - 1, "{out}");
    let sources: std::collections::BTreeSet<&str> =
        out.lines().filter_map(|l| l.split(" relayed from ").nth(1)).map(str::trim).collect();
    // The corrupted relay counts among them: it served, once.
    assert!(sources.len() <= relaying, "only {relaying} hosts serve, not {sources:?}:\n{out}");
    assert!(out.contains("failed its SHA-256 check") && out.contains("fetching the copy again"), "{out}");
    assert!(
        out.contains(&format!("copies: {n} delivered")) && out.contains("sent by the workstation"),
        "the summary: {out}"
    );
    assert_converged_and_clean(&tb, &sha);
    eprintln!("first apply: the workstation sent {sent} bytes for {image} bytes of image to {n} hosts");

    // A new image while the last host has no route to its peers (only to the workstation): it gets a
    // direct copy, named; everyone else relays. In JSON: the bytes by workstation and by peers.
    let sha2 = build(&home, dir.path(), "2");
    std::fs::write(&clusterfile_path, clusterfile(&tb, "relay/payload:2")).unwrap();
    let last = n - 1;
    // A firewall that drops what goes to the peers (a connection there is never answered).
    let isolate = format!(
        "nft add table ip isolate && nft 'add chain ip isolate out {{ type filter hook output priority 0 ; }}' && \
         nft add rule ip isolate out ip daddr 10.251.{id}.0/24 ip daddr != 10.251.{id}.1 drop",
        id = tb.id
    );
    assert!(tb.exec(last, &isolate).status.success());
    let second = apply_images(&tb, &home, dir.path(), &[], true);
    let raw = stdout(&second);
    let (out, stamped) = unstamped(&raw);
    // From the moment a peer holds the image (the isolated host's tries can start) to its direct copy.
    let held = stamped.iter().find(|(_, l)| l.contains("\"image_copy_complete\"")).map(|(t, _)| *t).unwrap();
    let fallback = stamped
        .iter()
        .find(|(_, l)| l.contains("\"image_copy_note\"") && l.contains("cannot reach peer(s)"))
        .map(|(t, _)| *t)
        .unwrap_or_else(|| panic!("no fallback: {out}"));
    eprintln!(
        "FIGURE a host whose peers drop its connections took its direct copy {:.1} s after a peer held the image",
        fallback - held
    );
    assert!(fallback - held <= 12.0, "{:.1} s: {out}", fallback - held);
    assert!(second.status.success(), "{out}\n{}", String::from_utf8_lossy(&second.stderr));
    let events: Vec<serde_json::Value> = out.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let isolated = tb.ips[last].to_string();
    let of = |kind: &'static str| events.iter().filter(move |e| e["type"] == kind);
    assert!(
        of("image_copy_note")
            .any(|e| e["host"] == isolated.as_str()
                && e["message"].as_str().unwrap().starts_with("cannot reach peer(s)")),
        "{out}"
    );
    let copies: Vec<_> = of("image_copy_complete").collect();
    assert_eq!(copies.len(), n, "{out}");
    let direct: Vec<&str> =
        copies.iter().filter(|e| e["from"] == "workstation").map(|e| e["host"].as_str().unwrap()).collect();
    assert_eq!(direct.len(), 2, "the seed and the isolated host: {out}");
    assert!(direct.contains(&isolated.as_str()), "{out}");
    let summary = of("image_distribution").next().expect("a summary event");
    assert_eq!(summary["workstation_bytes"], 2 * copies[0]["bytes"].as_u64().unwrap(), "{summary}");
    assert_eq!(summary["peer_bytes"], (n as u64 - 2) * copies[0]["bytes"].as_u64().unwrap(), "{summary}");
    assert_converged_and_clean(&tb, &sha2);

    // Nothing changed: nothing travels, and the plan has no relay to announce.
    let again = apply_images(&tb, &home, dir.path(), &[], false);
    let again_out = unstamped(&stdout(&again)).0;
    assert!(again.status.success() && again_out.contains("No changes."), "{again_out}");
}

/// Installed as users install it (`cargo install --locked --path cli --root DIR`), `sealer` is one binary
/// that relays: with only `DIR/bin` on the PATH, three hosts get a 12 MiB image and the workstation sends
/// about one copy.
#[test]
fn an_installed_sealer_alone_relays_the_image() {
    if !testbed_available() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let repo = sealer_tests::repo_root();
    let install = std::process::Command::new(cargo)
        .args(["install", "--locked", "--quiet", "--path"])
        .arg(repo.join("cli"))
        .arg("--root")
        .arg(root.path())
        // A target directory of its own that later runs reuse: the install builds in release.
        .env("CARGO_TARGET_DIR", repo.join("target/install-test"))
        .output()
        .unwrap();
    assert!(install.status.success(), "cargo install: {}", String::from_utf8_lossy(&install.stderr));
    let installed: Vec<String> = std::fs::read_dir(root.path().join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(installed, ["sealer"], "one binary");

    let tb = Testbed::up(3);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    build(&home, dir.path(), "1");
    std::fs::write(dir.path().join("Clusterfile"), clusterfile(&tb, "relay/payload:1")).unwrap();
    let before = egress(&tb);
    let mut args = vec!["apply".to_string(), "--auto-approve".to_string()];
    for ip in &tb.ips {
        args.extend(["--target".to_string(), format!("image.{ip}")]);
    }
    // Only the installed binary on the PATH: no `sealer-relay`, no `tar` of the workstation's.
    let out = std::process::Command::new("sealer")
        .args(&args)
        .current_dir(dir.path())
        .env("PATH", root.path().join("bin"))
        .env("SEALER_HOME", &home)
        .env("NO_COLOR", "1")
        .env_remove("SEALER_STATE")
        .output()
        .unwrap();
    let sent = egress(&tb) - before;
    let text = stdout(&out);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.matches(" relayed from 10.").count(), 2, "two hosts fetched from a peer:\n{text}");
    let image = (PAYLOAD_MB << 20) as u64;
    assert!(sent <= image + image / 10, "the workstation sent {sent} bytes for a {image}-byte image:\n{text}");
    eprintln!("installed sealer: the workstation sent {sent} bytes for {image} bytes of image to 3 hosts");
}

/// A planned seed whose `/var/lib/sealer` is mounted `noexec` cannot run the helper: it says so, gets the
/// files from the workstation once (nothing is streamed to a helper that cannot run), installs them with
/// tar and serves nobody; the next host seeds and the last relays from it.
#[test]
fn a_host_that_cannot_run_the_helper_gets_the_files_and_the_others_relay() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(3);
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let sha = build(&home, dir.path(), "1");
    std::fs::write(dir.path().join("Clusterfile"), clusterfile(&tb, "relay/payload:1")).unwrap();
    // The first host is the planned seed: the workstation's stream meets a helper that cannot run.
    let plan = ok(&sealer_at(&home, dir.path(), &["plan"]));
    let seed = format!("# image.{} will be created\n  # (seed: copied from the workstation", tb.ips[0]);
    assert!(plan.contains(&seed), "{plan}");
    tb.exec_ok(0, "mkdir -p /var/lib/sealer && mount -t tmpfs -o noexec tmpfs /var/lib/sealer");
    let before = egress(&tb);
    let first = apply_images(&tb, &home, dir.path(), &[], false);
    let sent = egress(&tb) - before;
    let out = unstamped(&stdout(&first)).0;
    assert!(first.status.success(), "{out}\n{}", String::from_utf8_lossy(&first.stderr));
    let image = (PAYLOAD_MB << 20) as u64;
    // Two copies and two helpers (each within a tenth of the image), not a third copy streamed in vain.
    assert!(sent <= 2 * (image + image / 10), "two copies from the workstation, not {sent} bytes:\n{out}");
    let noexec = tb.ips[0];
    assert!(out.contains(&format!("image.{noexec}: `sealer-relay` cannot run on this host")), "{out}");
    assert!(out.contains(&format!("image.{noexec}: 12.00 MiB copied from the workstation")), "{out}");
    // The next host seeds instead (streamed to its helper), and the last fetches from it.
    assert_eq!(out.matches("MiB copied from the workstation").count(), 2, "{out}");
    assert_eq!(out.matches(" relayed from 10.").count(), 1, "{out}");
    assert_converged_and_clean(&tb, &sha);
    let kept = tb.exec_ok(0, "ls -A /var/lib/sealer/relay; mount | grep -c ' /var/lib/sealer .*noexec'");
    assert_eq!(
        kept.lines().collect::<Vec<_>>(),
        ["digest", "manifest", "rootfs", "1"],
        "no relay directory left: {kept}"
    );
}
