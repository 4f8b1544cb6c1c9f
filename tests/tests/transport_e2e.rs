//! The SSH transport against real OpenSSH servers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sealer_providers::{SshAuth, SshSession, SshTarget, TransportError};
use sealer_tests::{testbed_available, Testbed, TESTBED_ROOT_PASSWORD};

fn target(tb: &Testbed, i: usize, auth: SshAuth) -> SshTarget {
    SshTarget {
        ip: tb.ips[i],
        port: 22,
        user: "root".into(),
        auth,
        known_host_key: None,
        strict_host_keys: false,
        connect_timeout: Duration::from_secs(3),
    }
}

/// The bytes as `od -c` shows them, on one line: what a host must have read from its stdin.
fn od(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = std::process::Command::new("sh")
        .args(["-c", "od -An -c | tr -s ' \n' ' '"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim_end().to_string()
}

fn key(tb: &Testbed) -> SshAuth {
    SshAuth::Key { path: tb.key.clone(), passphrase: None, password: None }
}

const T: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_runs_many_commands_with_stdin_and_exit_status() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(2);
    let s = SshSession::connect(target(&tb, 0, key(&tb))).await.unwrap();
    assert_eq!(s.host_key(), tb.host_key(0));
    assert!(!s.here_documents(), "no here-document before a shell said its bash keeps them in pipes");
    let out = s.exec("hostname; cat; exit 3", b"from stdin", T).await.unwrap();
    assert!(s.here_documents(), "the testbed's bash 5.2 keeps short here-documents in pipes");
    let stdin = s.exec("readlink /proc/self/fd/0", b"Secret-Stdin-2\n", T).await.unwrap().stdout_text();
    assert!(stdin.starts_with("pipe:"), "short text stdin through a pipe, never a file: {stdin}");
    assert_eq!(out.status, 3);
    assert_eq!(out.stdout_text(), format!("tb{}-h1\nfrom stdin", tb.id));
    // 20 commands at once over one connection: the channel cap keeps OpenSSH's MaxSessions happy.
    let s = std::sync::Arc::new(s);
    let mut set = tokio::task::JoinSet::new();
    for i in 0..20 {
        let s = s.clone();
        set.spawn(async move { (i, s.exec(&format!("echo {i}; sleep 0.2"), b"", T).await) });
    }
    while let Some(joined) = set.join_next().await {
        let (i, out) = joined.unwrap();
        let out = out.unwrap();
        assert_eq!((out.status, out.stdout_text()), (0, i.to_string()));
    }
    let sessions = tb.exec(0, "ps -eo args | grep -c '^sshd: root@notty'");
    assert_eq!(String::from_utf8_lossy(&sessions.stdout).trim(), "1", "one ssh connection for all commands");
    // Commands share long-lived shells: nothing of one leaks into the next.
    let out = s.exec("cd /tmp; printf no-newline; printf err >&2; exit 4", b"", T).await.unwrap();
    assert_eq!((out.status, out.stdout_text(), out.stderr_text()), (4, "no-newline".into(), "err".into()));
    let big = vec![b'x'; 1 << 20];
    let out = s.exec("head -c 10", &big, T).await.unwrap();
    assert_eq!((out.status, out.stdout.len()), (0, 10), "a command that reads part of its stdin");
    let out = s.exec("pwd; wc -c", b"abc", T).await.unwrap();
    assert_eq!(out.stdout_text(), "/root\n3", "no cwd or stdin left over from earlier commands");
    // Short text goes in a here-document: byte for byte, whatever it holds; text that does not end with a
    // newline, and binary, go through `head -c`.
    for text in ["$HOME `id` \\ '\"\n  \ttabs\n\n", "no newline at the end", "nul\0byte\n"] {
        let out = s.exec("od -An -c | tr -s ' \n' ' '", text.as_bytes(), T).await.unwrap();
        assert_eq!(out.stdout_text(), od(text.as_bytes()), "{text:?}");
    }
    let out = s.exec("set -e; false; echo unreachable", b"", T).await.unwrap();
    assert_eq!((out.status, out.stdout_text()), (1, String::new()));
    // A command that times out closes its shell: the host ends that session once the command is over, so
    // twelve timeouts (more than OpenSSH's ten sessions per connection) leave the connection usable.
    for _ in 0..12 {
        let out = s.exec("sleep 1", b"", Duration::from_millis(200)).await;
        assert!(matches!(out, Err(TransportError::Timeout { .. })), "{out:?}");
    }
    assert_eq!(s.exec("echo after", b"", T).await.unwrap().stdout_text(), "after");
    let shells = || shells(&tb);
    let until = std::time::Instant::now() + Duration::from_secs(10);
    while shells() != "1" {
        assert!(std::time::Instant::now() < until, "the timed-out shells did not end: {} shells", shells());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pw = SshSession::connect(target(&tb, 1, SshAuth::Password(TESTBED_ROOT_PASSWORD.into()))).await.unwrap();
    assert_eq!(pw.exec("id -u", b"", T).await.unwrap().stdout_text(), "0");

    // A key the host does not accept, then the password: the password gets in (sealer's client offers
    // both); with a wrong password too, the error names both methods and no secret.
    assert!(tb.exec(1, "rm -f /root/.ssh/authorized_keys").status.success());
    let both =
        |password: &str| SshAuth::Key { path: tb.key.clone(), passphrase: None, password: Some(password.into()) };
    let fallback = SshSession::connect(target(&tb, 1, both(TESTBED_ROOT_PASSWORD))).await.unwrap();
    assert_eq!(fallback.exec("id -u", b"", T).await.unwrap().stdout_text(), "0");
    let refused = match SshSession::connect(target(&tb, 1, both("Wrong-Pw-3310"))).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a wrong password got in"),
    };
    assert!(refused.contains("public key, then password") && !refused.contains("Wrong-Pw-3310"), "{refused}");
}

/// The shells of `tb`'s first host: `bash --noprofile` processes whose parent is not one (each shell's
/// watcher is a subshell of its shell).
fn shells(tb: &Testbed) -> String {
    let count = "ps -eo ppid=,pid=,args= | awk '$3 == \"bash\" && $4 == \"--noprofile\" { up[$2] = $1 } \
                 END { n = 0; for (p in up) if (!(up[p] in up)) n++; print n }'";
    String::from_utf8_lossy(&tb.exec(0, count).stdout).trim().to_string()
}

/// A refresh's read on a connection without a shell runs on a channel of its own (`sh` in place of root's
/// login shell, one process): no shell is opened for it, what root's `~/.ssh/rc` prints is not taken for
/// its output, a read that fails or does not parse says so with its own status and message, and a timeout
/// names the read, not its framing. Once a shell is open, reads go there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_opens_no_shell_and_drops_what_the_login_shell_prints() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(1);
    // sshd runs `~/.ssh/rc` before every session's command, its output on the command's streams; each
    // session counts itself in /tmp/sessions.
    let rc = "echo 'echo rc-noise; echo rc-err >&2; echo x >> /tmp/sessions' > /root/.ssh/rc";
    assert!(tb.exec(0, rc).status.success());
    let sessions = || String::from_utf8_lossy(&tb.exec(0, "wc -l < /tmp/sessions").stdout).trim().to_string();
    let s = SshSession::connect(target(&tb, 0, key(&tb))).await.unwrap();
    let name = format!("tb{}-h1", tb.id);
    let read = "read -r n < /proc/sys/kernel/hostname && printf '%s\\n' \"$n\"";
    let out = s.read(read, T).await.unwrap();
    assert_eq!((out.status, out.stdout_text(), out.stderr_text()), (0, name.clone(), String::new()));
    assert_eq!(shells(&tb), "0", "a read opened a shell");
    let out = s.read("echo partial; echo why >&2; exit 3", T).await.unwrap();
    assert_eq!((out.status, out.stdout_text(), out.stderr_text()), (3, "partial".into(), "why".into()));
    let out = s.read("echo )", T).await.unwrap();
    assert!(out.status == 2 && out.stderr_text().contains("Syntax error"), "{out:?}");
    let timed_out = s.read("sleep 5", Duration::from_millis(300)).await.unwrap_err().to_string();
    assert!(timed_out.contains("`sleep 5`") && !timed_out.contains("__sealer"), "{timed_out}");
    assert_eq!(s.exec("true", b"", T).await.unwrap().status, 0);
    let before = sessions();
    assert_eq!(s.read(read, T).await.unwrap().stdout_text(), name);
    assert_eq!((shells(&tb), sessions()), ("1".into(), before), "the read went to the open shell");
}

/// A host whose bash keeps here-documents in temporary files (bash before 5.1, or told to behave as 5.0,
/// as sshd's `SetEnv BASH_COMPAT=50` does here): its shells say nothing of pipes, and no stdin goes as a
/// here-document, a short secret included: it reaches the command through a pipe, never a file. A chain
/// of steps with a stdin runs there too, step by step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bash_that_keeps_here_documents_in_files_gets_no_stdin_as_one() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(1);
    tb.stop_sshd(0);
    let config = "echo 'SetEnv BASH_COMPAT=50' >> /etc/ssh/sealer_testbed_sshd_config";
    assert!(tb.exec(0, config).status.success());
    tb.start_sshd(0);
    let s = SshSession::connect(target(&tb, 0, key(&tb))).await.unwrap();
    let secret = b"Heredoc-Secret-31\n";
    let command = "echo \"$BASH_COMPAT\"; readlink /proc/self/fd/0; cat";
    let out = s.exec(command, secret, T).await.unwrap();
    let lines: Vec<String> = out.stdout_text().lines().map(str::to_string).collect();
    assert_eq!(lines.first().map(String::as_str), Some("50"), "sshd gave the shells BASH_COMPAT: {lines:?}");
    assert!(lines[1].starts_with("pipe:") && lines[2] == "Heredoc-Secret-31", "{lines:?}");
    assert!(!s.here_documents(), "a shell of a bash that writes here-documents to files said pipes");
    let steps: Vec<sealer_providers::transport::Step> = (0..3)
        .map(|i| sealer_providers::transport::Step {
            command: "readlink /proc/self/fd/0 | cut -c1-5; cat".into(),
            stdin: format!("step-{i}\n").into_bytes(),
            in_shell: None,
        })
        .collect();
    let seen = std::sync::Mutex::new(Vec::new());
    let on = |e: sealer_providers::transport::StepEvent| {
        if let sealer_providers::transport::StepEvent::Ended(k, out) = e {
            seen.lock().unwrap().push((k, out.status, out.stdout_text()));
        }
    };
    s.exec_steps(&steps, T, &|| false, &on).await.unwrap();
    let seen = seen.into_inner().unwrap();
    let expected: Vec<_> = (0..3).map(|i| (i, 0, format!("pipe:\nstep-{i}"))).collect();
    assert_eq!(seen, expected, "each step's stdin through a pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_unreachable_host_and_changed_host_key_are_clear_errors() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(2);
    let err = match SshSession::connect(target(&tb, 0, SshAuth::Password("Not-The-Pw-991".into()))).await {
        Err(e) => e,
        Ok(_) => panic!("wrong password accepted"),
    };
    let shown = err.to_string();
    assert!(matches!(err, TransportError::Auth { .. }), "{shown}");
    assert!(shown.contains(&tb.ips[0].to_string()) && !shown.contains("Not-The-Pw-991"), "{shown}");

    tb.stop_sshd(1);
    let err = match SshSession::connect(target(&tb, 1, key(&tb))).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("connected to a stopped sshd"),
    };
    assert!(err.contains(&format!("cannot reach `{}:22`", tb.ips[1])), "{err}");
    tb.start_sshd(1);

    let mut pinned = target(&tb, 0, key(&tb));
    pinned.known_host_key = Some(tb.host_key(1));
    let err = match SshSession::connect(pinned).await {
        Err(e) => e.to_string(),
        Ok(_) => panic!("accepted a changed host key"),
    };
    let expected = sealer_providers::transport::fingerprint(&tb.host_key(1));
    let found = sealer_providers::transport::fingerprint(&tb.host_key(0));
    assert!(err.contains("host key of") && err.contains(&expected) && err.contains(&found), "{err}");

    let mut strict = target(&tb, 0, key(&tb));
    strict.strict_host_keys = true;
    assert!(matches!(SshSession::connect(strict).await, Err(TransportError::HostKeyUnknown { .. })));
    let mut known = target(&tb, 0, key(&tb));
    known.known_host_key = Some(tb.host_key(0));
    known.strict_host_keys = true;
    assert!(SshSession::connect(known).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_root_users_run_commands_through_sudo() {
    if !testbed_available() {
        return;
    }
    if !std::path::Path::new("/usr/bin/sudo").exists() {
        sealer_tests::skip_without("sudo is not installed");
        return;
    }
    let tb = Testbed::up(1);
    // ops: a password, sudo asks it. nopw: a password (its login), sudo asks nothing. dev: a key, sudo asks
    // nothing. keyed: a key, sudo asks a password.
    let setup = tb.exec(
        0,
        "for u in ops nopw dev keyed; do useradd -m -s /bin/sh $u && mkdir -p /home/$u/.ssh && \
           cp /root/.ssh/authorized_keys /home/$u/.ssh/ && chown -R $u:$u /home/$u/.ssh && chmod 700 /home/$u/.ssh; done && \
         echo 'ops:Ops-Sudo-Pw-55' | chpasswd && echo 'nopw:Nopw-Pw-77' | chpasswd && \
         echo 'keyed:Keyed-Pw-99' | chpasswd && usermod -p '*' dev && \
         echo 'ops ALL=(ALL) ALL' > /etc/sudoers.d/ops && echo 'keyed ALL=(ALL) ALL' > /etc/sudoers.d/keyed && \
         echo 'nopw ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/nopw && echo 'dev ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/dev",
    );
    assert!(setup.status.success(), "{}", String::from_utf8_lossy(&setup.stderr));
    // The command's stdin reaches it byte for byte, whether sudo asked for the password or not; binary and
    // long stdin too (it takes the other framing). Commands run in long-lived root shells.
    let binary: Vec<u8> = (0..40_000u32).map(|i| (i % 251) as u8).collect();
    let cases = [
        ("ops", SshAuth::Password("Ops-Sudo-Pw-55".into())),
        ("nopw", SshAuth::Password("Nopw-Pw-77".into())),
        ("dev", key(&tb)),
        ("keyed", SshAuth::Key { path: tb.key.clone(), passphrase: None, password: Some("Keyed-Pw-99".into()) }),
    ];
    for (user, auth) in cases {
        let mut t = target(&tb, 0, auth);
        t.user = user.into();
        let s = SshSession::connect(t).await.unwrap();
        for _ in 0..3 {
            let out = s.exec("id -u; cat", b"payload\n", T).await.unwrap();
            assert_eq!((out.status, out.stdout_text()), (0, "0\npayload".to_string()), "{user}: {}", out.stderr_text());
            assert_eq!(out.stderr_text(), "", "{user}: nothing but the command's own stderr");
        }
        // Short text (a secret, as it may be) reaches the command through a pipe, never a file; here as a
        // here-document, which the host's shell said it keeps in a pipe.
        let out = s.exec("readlink /proc/self/fd/0", b"Secret-Stdin-1\n", T).await.unwrap();
        assert!(out.stdout_text().starts_with("pipe:") && s.here_documents(), "{user}: {}", out.stdout_text());
        let out = s.exec("sha256sum", &binary, T).await.unwrap();
        let expected: String =
            ring::digest::digest(&ring::digest::SHA256, &binary).as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert!(out.stdout_text().starts_with(&expected), "{user}: binary stdin byte-exact");
        let sessions = tb.exec(0, &format!("ps -eo args | grep -c '^sshd: {user}@notty'"));
        assert_eq!(String::from_utf8_lossy(&sessions.stdout).trim(), "1", "{user}: one connection");
    }
    // No file of the host starts with a password, and no password is on any command line.
    // (The patterns are written so that they do not match the grep's own command line.)
    let pattern = "'Ops-Sudo-Pw-5[5]|Nopw-Pw-7[7]|Keyed-Pw-9[9]'";
    let leaked = tb.exec(
        0,
        &format!("grep -rlE {pattern} /home /tmp /root /var/tmp; grep -lE {pattern} /proc/[0-9]*/cmdline; true"),
    );
    assert_eq!(String::from_utf8_lossy(&leaked.stdout).trim(), "", "passwords found");
    // A wrong sudo password, and a sudo that asks when no password is set: one clear error each.
    let mut wrong =
        target(&tb, 0, SshAuth::Key { path: tb.key.clone(), passphrase: None, password: Some("nope".into()) });
    wrong.user = "keyed".into();
    let s = SshSession::connect(wrong).await.unwrap();
    let e = s.exec("true", b"", T).await.unwrap_err().to_string();
    assert!(e.contains("sudo refused the password"), "{e}");
    let mut none = target(&tb, 0, key(&tb));
    none.user = "keyed".into();
    let s = SshSession::connect(none).await.unwrap();
    let e = s.exec("true", b"", T).await.unwrap_err().to_string();
    assert!(e.contains("sudo asks for a password and none is set"), "{e}");
    // A line break would end the password early and feed the rest to the shell: refused, never sent.
    let broken = SshAuth::Key { path: tb.key.clone(), passphrase: None, password: Some("Keyed-Pw-99\nid".into()) };
    let mut broken = target(&tb, 0, broken);
    broken.user = "keyed".into();
    let s = SshSession::connect(broken).await.unwrap();
    let e = s.exec("true", b"", T).await.unwrap_err().to_string();
    assert!(e.contains("the password has a line break"), "{e}");

    // A host without bash: every command on a channel of its own, through sudo the same way.
    assert!(tb.exec(0, "rm -f /usr/bin/bash /bin/bash; ! command -v bash").status.success());
    for (user, auth) in [("ops", SshAuth::Password("Ops-Sudo-Pw-55".into())), ("dev", key(&tb))] {
        let mut t = target(&tb, 0, auth);
        t.user = user.into();
        let s = SshSession::connect(t).await.unwrap();
        for _ in 0..2 {
            let out = s.exec("id -u; cat", b"payload\n", T).await.unwrap();
            assert_eq!((out.status, out.stdout_text()), (0, "0\npayload".to_string()), "{user}: {}", out.stderr_text());
            assert_eq!(out.stderr_text(), "", "{user} without bash");
        }
    }
}

/// A remote kept from one operation to the next (as `sealer reconcile` keeps it) connects again when the
/// host closed its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_remote_connects_again_after_the_host_closed_its_connection() {
    use sealer_providers::cluster::{Remote as _, SshRemote};
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(1);
    let remote = SshRemote::new([(tb.ips[0], target(&tb, 0, key(&tb)))].into(), T);
    assert_eq!(remote.exec(tb.ips[0], "echo before", b"").await.unwrap().stdout_text(), "before");
    // Killed the moment the connection's sshd is seen (a loaded machine may show it late); what the host
    // ran is printed when it never is.
    let killed = tb.exec(
        0,
        "for _ in $(seq 50); do pkill -f '^sshd: root@notty' && exit 0; sleep 0.1; done; ps -eo pid,args >&2; exit 1",
    );
    assert!(killed.status.success(), "the connection's sshd not found: {}", String::from_utf8_lossy(&killed.stderr));
    // Moments for the client to see the connection end.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = remote.exec(tb.ips[0], "echo after", b"").await.unwrap();
    assert_eq!(out.stdout_text(), "after");
    let sessions = tb.exec(0, "ps -eo args | grep -c '^sshd: root@notty'");
    assert_eq!(String::from_utf8_lossy(&sessions.stdout).trim(), "1", "one new connection");
    // A private file's own directory, made by the upload, is 0700; its parents and another file's
    // directories keep the usual mode.
    remote.upload(tb.ips[0], "/var/lib/up/secret/a/key", b"k", 0o600).await.unwrap();
    remote.upload(tb.ips[0], "/var/lib/up/public/a/file", b"f", 0o644).await.unwrap();
    let modes = tb.exec(
        0,
        "cd /var/lib && stat -c '%n %a' up up/secret up/secret/a up/secret/a/key up/public/a up/public/a/file",
    );
    assert_eq!(
        String::from_utf8_lossy(&modes.stdout),
        "up 755\nup/secret 755\nup/secret/a 700\nup/secret/a/key 600\nup/public/a 755\nup/public/a/file 644\n"
    );
}

/// A command still running when its connection is lost (the workstation killed) ends on the host within
/// seconds, as root and through sudo; what an earlier command started in a session of its own (the
/// daemons sealer starts) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_ends_the_command_it_was_running() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(1);
    let pgrep = |pattern: &str| {
        let out = tb.exec(0, &format!("pgrep -f {pattern} | wc -l"));
        String::from_utf8_lossy(&out.stdout).trim().parse::<usize>().unwrap()
    };
    let mut targets = vec![("root", target(&tb, 0, key(&tb)))];
    tb.exec_ok(
        0,
        "useradd -m -s /bin/sh dev && mkdir -p /home/dev/.ssh && cp /root/.ssh/authorized_keys /home/dev/.ssh/ && \
         chown -R dev:dev /home/dev/.ssh && chmod 700 /home/dev/.ssh && usermod -p '*' dev && \
         echo 'dev ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/dev",
    );
    let mut sudo = target(&tb, 0, key(&tb));
    sudo.user = "dev".into();
    targets.push(("sudo", sudo));
    for (who, target) in targets {
        let session = std::sync::Arc::new(SshSession::connect(target).await.unwrap());
        session.exec("setsid sleep 301 >/dev/null 2>&1 </dev/null &", b"", T).await.unwrap();
        let running = {
            let session = session.clone();
            tokio::spawn(async move { session.exec("sleep 121; echo never", b"", Duration::from_secs(300)).await })
        };
        let started = std::time::Instant::now();
        while pgrep("'^sleep 121'") == 0 {
            assert!(started.elapsed() < Duration::from_secs(10), "{who}: the command never started");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        running.abort();
        let _ = running.await;
        std::sync::Arc::try_unwrap(session).ok().expect("the only owner").close().await;
        let lost = std::time::Instant::now();
        while pgrep("'^sleep 121'") > 0 {
            assert!(lost.elapsed() < Duration::from_secs(10), "{who}: the command outlived its connection");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        eprintln!("FIGURE {who}: the running command ended {:.1} s after its connection", lost.elapsed().as_secs_f64());
        assert_eq!(pgrep("'^sleep 301'"), 1, "{who}: a daemon of its own session stays");
        tb.exec_ok(0, "pkill -f '^sleep 301'");
    }
}

/// A command that fails while a large stdin still streams to it (a full disk under `cat > FILE`) ends at
/// once with its own error: the host drains what it no longer reads, and the workstation keeps reading
/// the command's output while it sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_failing_early_under_a_large_stdin_ends_at_once() {
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(1);
    let session = SshSession::connect(target(&tb, 0, key(&tb))).await.unwrap();
    let stdin = vec![7u8; 64 << 20];
    for command in [
        "head -c 1000000 >/dev/null; echo 'write error: No space left on device' >&2; exit 1",
        "for i in $(seq 3000); do echo \"line $i of a chatty failure\" >&2; done; exit 3",
    ] {
        let started = std::time::Instant::now();
        let out = session.exec(command, &stdin, Duration::from_secs(60)).await.unwrap();
        let took = started.elapsed();
        assert_ne!(out.status, 0, "{command}");
        assert!(took < Duration::from_secs(20), "{command}: {took:?}");
        eprintln!("FIGURE a command failing under 64 MiB of stdin ended in {:.1} s", took.as_secs_f64());
    }
}

/// A host that goes silent (a partition) while a large stdin streams to it is named as having stopped
/// answering within the keepalive bound (12 s) and a margin, not after the command's timeout: the socket's
/// unacknowledged bytes end the connection where russh's keepalive timer cannot run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_partitioned_while_a_large_stdin_streams_is_named_within_15_s() {
    use sealer_providers::cluster::{Remote as _, SshRemote};
    use sealer_providers::{ProviderError, TransportError};
    if !testbed_available() {
        return;
    }
    let tb = Testbed::up(1);
    let ip = tb.ips[0];
    let remote = SshRemote::new([(ip, target(&tb, 0, key(&tb)))].into(), Duration::from_secs(120));
    assert!(remote.exec(ip, "true", b"").await.is_ok());
    // The host reads nothing for a while: the stream stops on full windows and socket buffers.
    let stdin = vec![7u8; 256 << 20];
    let sending = remote.exec(ip, "sleep 30; cat >/dev/null", &stdin);
    let partition = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        tb.partition(0);
        std::time::Instant::now()
    };
    let (result, cut) = tokio::join!(sending, partition);
    let took = cut.elapsed();
    let error = result.unwrap_err();
    assert!(matches!(error, ProviderError::Transport(TransportError::StoppedAnswering { .. })), "{error}");
    assert!(error.to_string().contains(&ip.to_string()), "{error}");
    assert!(took <= Duration::from_secs(15), "{took:?}: {error}");
    eprintln!("FIGURE a host partitioned under 256 MiB of stdin was named in {:.1} s", took.as_secs_f64());
    // Remembered as unreachable: what follows (stopping relays) skips it, and a command fails at once,
    // saying why, instead of waiting for a connection again.
    assert!(remote.known_unreachable(ip));
    let again = std::time::Instant::now();
    let refused = remote.exec(ip, "true", b"").await.unwrap_err().to_string();
    assert!(again.elapsed() < Duration::from_secs(1), "{:?}: {refused}", again.elapsed());
    assert!(refused.contains("it stopped answering"), "{refused}");
    tb.heal(0);
}
