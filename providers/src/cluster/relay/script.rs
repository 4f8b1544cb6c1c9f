//! The host's side of the relay: the script parts that fetch, take in and stop.

use std::net::IpAddr;

use super::{Archive, CONNECT_SECS, DEADLINE_SECS, HELPER_SECS, IDLE_SECS, NO_HELPER};
use crate::shell::quote;

/// The script part that fetches the relay's executable, the manifest and the archive from `peer`, in
/// that order, into the relay directory (where it leaves the shell), the archive unpacked as `unpack`
/// says (`--unpack DEST`, and `--keep` to serve it), within `seconds`; exits 3 when the peer cannot be
/// reached, refuses or is too slow, 4 when a file does not match its SHA-256.
pub(super) fn fetch_script(
    h: &str,
    (peer, port, seconds): (IpAddr, u16, u64),
    archive: &Archive,
    unpack: &str,
) -> String {
    // The helper comes with bash alone (`/dev/tcp`, `sha256sum`; the token on stdin, never in a
    // command line), into a file of this command's own (named by its shell's `$BASHPID`, taken once:
    // a pipeline's parts have their own), renamed once checked, as another copy may be running the
    // helper; then it fetches the rest, checking each byte as it arrives (one process, and a SHA-256
    // several times faster than `sha256sum`).
    format!(
        "h={h}; part=$h.$BASHPID\n\
         if ! {{ test -x $h && echo \"$h  $h\" | sha256sum -c --status; }}; then\n\
           timeout {CONNECT_SECS} bash -c 'exec 3<>/dev/tcp/$0/$1' {peer} {port} 2>/dev/null || exit 3\n\
           printf '%s\\n' \"$token\" | timeout {HELPER_SECS} bash -c 'exec 3<>/dev/tcp/$0/$1 || exit 3; \
             IFS= read -r t; printf \"%s %s\\n\" \"$t\" \"$2\" >&3; exec cat <&3' {peer} {port} $h > $part 2>/dev/null \
             || {{ rm -f $part; exit 3; }}\n\
           # Nothing at all: the relay refused this address (another source address, say).\n\
           test -s $part || {{ rm -f $part; exit 3; }}\n\
           echo \"$h  $part\" | sha256sum -c --status || {{ rm -f $part; exit 4; }}\n\
           chmod 700 $part && mv -f $part $h || exit 1\n\
         fi\n\
         printf '%s\\n' \"$token\" | ./$h fetch {peer} {port} {seconds} {manifest} {ml} {tar} {tl} {unpack}\n\
         rc=$?; if [ $rc -ge 126 ]; then exit {NO_HELPER}; elif [ $rc -ne 0 ]; then exit $rc; fi\n",
        manifest = archive.manifest_sha,
        ml = archive.manifest().len(),
        tar = archive.tar_sha,
        tl = archive.tar().len(),
    )
}

/// The script part that takes in the manifest and the archive from stdin (the workstation streams them),
/// with the helper sent and checked before, the archive unpacked as `unpack` says. Bounded by the
/// command's own time limit, as any copy from the workstation; a failure (stdin cut short, 3; another
/// SHA-256, 4; a signal) is the copy's error.
pub(super) fn receive_script(h: &str, archive: &Archive, unpack: &str) -> String {
    format!(
        "./{h} receive {DEADLINE_SECS} {m} {ml} {t} {tl} {unpack} || exit\n",
        m = archive.manifest_sha,
        ml = archive.manifest().len(),
        t = archive.tar_sha,
        tl = archive.tar().len(),
    )
}

/// The command that writes its stdin to `dir/sha` (a file of this command's own first, checked against
/// `sha`, then renamed), unless the host holds it already; then runs `then`.
pub(super) fn send_script(dir: &str, sha: &str, then: &str) -> String {
    let (qdir, part, file) = (quote(dir), quote(&format!("{dir}/{sha}.part")), quote(&format!("{dir}/{sha}")));
    format!(
        "set -e; mkdir -p {qdir}; p={part}.$$\n\
         if ! {{ test -f {file} && echo {sha}' '{file} | sha256sum -c --status; }}; then\n\
           cat > \"$p\"; echo {sha}' '\"$p\" | sha256sum -c --status || {{ rm -f \"$p\"; \
           echo 'the copy of {sha} does not match its SHA-256' >&2; exit 1; }}; mv -f \"$p\" {file}\n\
         fi\n{then}"
    )
}

/// The script part that starts the host's relay on `ip`, serving the relay directory `qdir` (quoted), with
/// the token and the addresses read before: it prints `relay-port PORT`, or `relay-failed WHY`.
pub(super) fn start_script(h: &str, qdir: &str, ip: IpAddr) -> String {
    format!(
        "cd {qdir} && {{ test -x {h} || chmod 700 {h}; }} && \
         printf '%s\\n%s' \"$token\" \"$access\" | ./{h} start . {ip} {IDLE_SECS} {DEADLINE_SECS} \
         || echo 'relay-failed `sealer-relay` cannot run here'\n"
    )
}

/// `script` run in the host's bash: in the command's own subshell there (no process to start), else in a
/// bash of its own (`/dev/tcp` and `read -d` need bash, whatever shell a non-root user's sudo gives).
pub(super) fn in_bash(script: &str) -> String {
    format!("s={}; if [ -n \"$BASH_VERSION\" ]; then eval \"$s\"; else exec bash -c \"$s\"; fi", quote(script))
}

/// Time a fetch from a peer that holds the whole copy may take before it is given up (and fetched
/// elsewhere): 1 MiB/s at the least.
pub(super) fn fetch_seconds(archive: &Archive) -> u64 {
    30 + archive.tar().len() as u64 / (1 << 20)
}

/// Stops every relay serving from `dir` (each wrote `PID.pid`), then removes `dir`, and `parent` too when
/// the relay's directory was all it held (a first apply that failed; the glob tells without a process).
/// A pid is killed only while it is still that relay (its executable in `dir`, named as the kernel names
/// it: links resolved): one that exited on its own may have left its number to another process.
pub(super) fn stop_script(dir: &str, parent: &str) -> String {
    format!(
        "d=$(cd {dir} 2>/dev/null && pwd -P) || d={dir}; \
         for f in {dir}/*.pid; do [ -f \"$f\" ] || continue; p=${{f##*/}}; p=${{p%.pid}}; \
         case $(readlink /proc/$p/exe 2>/dev/null) in \"$d\"/*) kill $p 2>/dev/null;; esac; done; rm -rf {dir}; \
         set -- {parent}/*; if ! [ -e \"$1\" ]; then rmdir {parent} 2>/dev/null; fi; true",
        dir = quote(dir),
        parent = quote(parent)
    )
}
