//! The image relay: the workstation sends a host's copy of the image (the archive of the files that
//! change, and the manifest) to one host, the seed; every other host fetches it from a host that already
//! holds it, over the cluster's own network, so the workstation sends about one copy whatever the number
//! of hosts, and the copies spread as a tree (each holder serves at most [`FANOUT`] peers at once).
//!
//! - A holder serves with `sealer-relay` (the `relay/` crate), which the seed receives from the
//!   workstation and every other host from its peer, with nothing but bash's `/dev/tcp`, `cat`,
//!   `timeout` and `sha256sum`; the helper then fetches the rest, checking each byte as it arrives (the
//!   seed's from its stdin, which the workstation streams). One command per copy fetches, installs and
//!   starts the host's relay ([`Relay::copy`]); the seed starts its relay first and serves its copy as it
//!   arrives, so its peers' copies overlap its own.
//! - Every file is named by its SHA-256, which the workstation computed: a fetched file that does not
//!   match is thrown away, its relay is no longer used, and the host fetches it again elsewhere.
//! - A relay answers only the cluster's addresses that bring this apply's random token (never on a
//!   command line nor in a file: on the stdin of the relay's start and of a fetch), and stops when the apply
//!   ends ([`Relay::stop`]), after two idle minutes, or after six hours.
//! - A host that cannot reach its peers (a firewall, no route) gets a direct copy from the workstation,
//!   and the apply says so.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use sha2::{Digest as _, Sha256};
use tokio::sync::{Notify, OnceCell};

use super::remote::Result;
use super::{cluster_dir, Cx};
use crate::error::ProviderError;
use crate::shell::quote;

mod pool;
mod script;
mod workstation;

use pool::*;
use script::*;

/// Peers one holder serves at once.
const FANOUT: usize = 3;
/// Unreachable peers a host tries before it takes a direct copy.
const PEER_TRIES: usize = 2;
/// Fetchers that could not connect to a holder before it is no longer offered.
const HOLDER_FAILURES: usize = 2;
/// How long a host that is not a planned seed waits for one to start before it seeds itself.
const SEED_GRACE: std::time::Duration = std::time::Duration::from_secs(3);
/// How long a host may take to fetch the relay's executable from a peer (connection included).
const HELPER_SECS: u64 = 20;
/// How long a host waits for a peer to accept a connection (a firewall that drops it never answers): two
/// peers tried, then a direct copy, within about 10 s.
const CONNECT_SECS: u64 = 5;
/// A relay with no request for this long exits; so does one running this long.
const IDLE_SECS: u64 = 120;
const DEADLINE_SECS: u64 = 6 * 3600;

/// How many of `hosts` hosts that get the same copy serve it to the others: enough holders that the
/// copies spread as a tree (`FANOUT` each at once), few enough that most hosts only fetch and install,
/// without a relay to start and stop.
pub fn relaying_hosts(hosts: usize) -> usize {
    let root = (1..=hosts).find(|r| r * r >= hosts).unwrap_or(hosts);
    root.max(FANOUT + 1).min(hosts)
}

/// A copy of at most this many bytes goes from the workstation to every host that needs it: relaying it
/// would cost more (the helper to send, relays to start and stop) than the copies it saves. The
/// workstation then sends at most this much per host beyond one copy.
pub const DIRECT_MAX: u64 = 64 * 1024;

/// Whether `copies` copies of `bytes` bytes are relayed between hosts, rather than each sent directly.
pub fn relayed(copies: usize, bytes: u64) -> bool {
    copies > 1 && bytes > DIRECT_MAX
}

/// How the image reaches the hosts, as the CLI sets it up.
pub struct Distribution {
    /// The `sealer-relay` executable for the hosts; `None` sends every host a direct copy.
    pub helper: Option<Vec<u8>>,
    /// The hosts the plan named as seeds: they copy from the workstation first; any other host seeds
    /// only when no seed started within 3 s (`SEED_GRACE`; the plan is then only a forecast).
    pub seeds: BTreeSet<IpAddr>,
    /// The hosts the plan named as relaying the copy on; a host the plan did not name relays too while
    /// fewer than [`relaying_hosts`] do (the executor may take hosts in another order than the plan).
    pub relays: BTreeSet<IpAddr>,
    pub progress: Arc<dyn CopyProgress>,
    /// Test hook (`SEALER_TEST_CORRUPT_RELAY=1`): the first host that got its copy from a peer has a
    /// byte of the copy it serves changed, and is offered first, so that a fetch from it must fail. The
    /// seed then serves only once its copy is whole, as any relay: hosts still wait for a source when
    /// the corrupted relay comes, rather than all fetching from the seed as its copy arrives.
    pub corrupt_first_relay: bool,
}

impl Default for Distribution {
    fn default() -> Self {
        Distribution {
            helper: None,
            seeds: BTreeSet::new(),
            relays: BTreeSet::new(),
            progress: Arc::new(Silent),
            corrupt_first_relay: false,
        }
    }
}

/// What the progress of the image's copies shows.
#[derive(Clone, Debug, PartialEq)]
pub enum CopyEvent {
    /// `host` needs `bytes` of `what` (`image`: the cluster image, or `app.NAME`).
    Planned { what: String, host: IpAddr, bytes: u64 },
    /// `host` holds its copy of `what`: `bytes` from the workstation (`from: None`) or from peer `from`.
    Delivered { what: String, host: IpAddr, bytes: u64, from: Option<IpAddr> },
    /// What the operator should know: a direct copy instead of a relayed one and why, a copy fetched again.
    Note { what: String, host: IpAddr, message: String },
    /// The apply ended: `copies` were delivered (the image's and applications'), with these bytes sent by
    /// the workstation and by peers.
    Summary { copies: usize, workstation_bytes: u64, peer_bytes: u64 },
}

pub trait CopyProgress: Send + Sync {
    fn event(&self, event: CopyEvent);
}

struct Silent;

impl CopyProgress for Silent {
    fn event(&self, _: CopyEvent) {}
}

/// One host's copy: the manifest of the new image, then the archive of the files that change, in one
/// buffer: as the workstation streams them to a seed, without a copy of its own.
pub(crate) struct Archive {
    stream: Vec<u8>,
    manifest_len: usize,
    pub tar_sha: String,
    pub manifest_sha: String,
}

impl Archive {
    /// The copy whose first `manifest_len` bytes of `stream` are the manifest, the rest the archive.
    pub(crate) fn new(stream: Vec<u8>, manifest_len: usize) -> Archive {
        let (manifest, tar) = stream.split_at(manifest_len);
        let (manifest_sha, tar_sha) = (sha256_hex(manifest), sha256_hex(tar));
        Archive { stream, manifest_len, tar_sha, manifest_sha }
    }

    pub(crate) fn manifest(&self) -> &[u8] {
        &self.stream[..self.manifest_len]
    }

    pub(crate) fn tar(&self) -> &[u8] {
        &self.stream[self.manifest_len..]
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The relay's executable, loaded once.
struct Helper {
    bytes: Vec<u8>,
    sha: String,
}

/// The relay of one apply: the token, the pools of holders, the archives built so far.
pub(crate) struct Relay {
    helper: Option<Helper>,
    token: String,
    allowed: Vec<IpAddr>,
    progress: Arc<dyn CopyProgress>,
    corrupt_first_relay: bool,
    seeds: BTreeSet<IpAddr>,
    relays: BTreeSet<IpAddr>,
    board: Mutex<Board>,
    changed: Notify,
    archives: Mutex<HashMap<String, Arc<OnceCell<Arc<Archive>>>>>,
    /// Why the relay is off, said once to the first host that copies.
    off_reason: Mutex<Option<String>>,
}

/// Where a host's copy came from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Origin {
    /// The workstation, as the archive's seed.
    Seed,
    Peer(IpAddr),
    /// The workstation, because the host could not reach its peers: it serves nobody either.
    Fallback,
}

/// How one fetch from a peer ended.
enum Fetch {
    /// Installed; serving on this port when the relay started.
    Done(Option<u16>),
    Unreachable,
    Corrupt,
    /// The helper cannot run on this host.
    NoHelper,
}

/// Where the bytes of a host's copy come from.
#[derive(Clone, Copy)]
enum Bytes {
    /// Fetched by the helper from a peer's relay, which may still be taking its own copy in (`arriving`).
    Peer { ip: IpAddr, port: u16, arriving: bool },
    /// Streamed by the workstation on the copy's stdin, taken in by the helper as a peer's copy is (the
    /// seed, and a host that cannot reach its peers).
    Stdin,
    /// Sent before into the relay directory ([`Relay::send`]), unpacked by tar: a host that cannot run
    /// the helper.
    Sent,
}

/// What a host does for its peers with the copy it takes in.
#[derive(Clone, Copy, PartialEq)]
enum Serve {
    /// Nothing: it keeps no copy.
    No,
    /// Keeps the copy, for a relay started by a command of its own (the seed's: before, so that it
    /// serves the copy as it arrives).
    Keep,
    /// Keeps the copy, then starts its relay.
    After,
}

/// A copy and where it goes on its host: the directory its archive unpacks into (merged with what it
/// holds, or emptied first when `fresh`), then the script that completes the install.
struct Install<'a> {
    archive: &'a Archive,
    dest: &'a str,
    fresh: bool,
    then: &'a str,
}

/// Exit status of the copy script when the caller's install failed (3 and 4 are the helper's).
const INSTALL_FAILED: u32 = 5;
/// What the apply says of a host where the helper cannot run (whether it was to seed or to fetch).
const NO_HELPER_NOTE: &str = "`sealer-relay` cannot run on this host: direct copy from the workstation";
/// Exit status of the copy script when the helper cannot run on the host (another architecture, a
/// `noexec` mount): the host takes a direct copy.
const NO_HELPER: u32 = 6;

fn random_token() -> Option<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Relay {
    pub(crate) fn new(distribution: Distribution, allowed: Vec<IpAddr>) -> Relay {
        let token = random_token();
        let (helper, off_reason) = match (distribution.helper, &token) {
            // Only providers built without the CLI (their tests) have no helper.
            (None, _) => (None, Some("no `sealer-relay` was given".to_string())),
            (Some(_), None) => (None, Some("no random token could be made (/dev/urandom)".to_string())),
            (Some(bytes), Some(_)) => (Some(Helper { sha: sha256_hex(&bytes), bytes }), None),
        };
        Relay {
            helper,
            token: token.unwrap_or_default(),
            allowed,
            progress: distribution.progress,
            corrupt_first_relay: distribution.corrupt_first_relay,
            seeds: distribution.seeds,
            relays: distribution.relays,
            board: Mutex::new(Board::default()),
            changed: Notify::new(),
            archives: Mutex::new(HashMap::new()),
            off_reason: Mutex::new(off_reason),
        }
    }

    fn board(&self) -> std::sync::MutexGuard<'_, Board> {
        // A poisoned board only means a task panicked while holding it: its data is whole.
        self.board.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether hosts relay `bytes` that travel to `hosts` of them (else each gets a direct copy).
    pub(crate) fn enabled(&self, hosts: usize, bytes: u64) -> bool {
        self.helper.is_some() && self.allowed.len() > 1 && relayed(hosts, bytes)
    }

    pub(crate) fn progress(&self, event: CopyEvent) {
        self.progress.event(event);
    }

    /// `what` is about to travel to `host`.
    pub(crate) fn planned(&self, what: &str, host: IpAddr, bytes: u64) {
        self.progress(CopyEvent::Planned { what: what.to_string(), host, bytes });
    }

    /// `host` holds its copy of `what` (`bytes`), from the workstation or from a peer.
    pub(crate) fn delivered(&self, what: &str, host: IpAddr, bytes: u64, from: Option<IpAddr>) {
        {
            let mut board = self.board();
            board.delivered += 1;
            match from {
                Some(_) => board.peer_bytes += bytes,
                None => board.workstation_bytes += bytes,
            }
        }
        self.progress(CopyEvent::Delivered { what: what.to_string(), host, bytes, from });
    }

    /// Brings `archive` to `ip` (see [`Relay::fetch`]), unpacked into `dest` (merged with what it holds,
    /// or alone in it when `fresh`), and runs the script `then` makes of the path of the manifest on the
    /// host; then `ip` may serve the copy to its peers.
    pub(crate) async fn deliver(
        &self,
        cx: &Cx,
        ip: IpAddr,
        what: &str,
        archive: &Archive,
        (dest, fresh): (&str, bool),
        then: impl FnOnce(&str) -> String,
    ) -> Result<()> {
        let bytes = archive.tar().len() as u64;
        self.planned(what, ip, bytes);
        let then = then(&format!("{}/{}", Self::dir(cx), archive.manifest_sha));
        let install = Install { archive, dest, fresh, then: &then };
        let (origin, port) = self.fetch(cx, ip, what, &install).await?;
        let corrupted =
            matches!((port, origin), (Some(_), Origin::Peer(_))) && self.corrupt_if_asked(cx, ip, archive).await;
        // One step, so that no host sees neither the seed nor its holder and seeds again.
        self.with_pool(&archive.tar_sha, |pool| {
            if !matches!(origin, Origin::Peer(_)) {
                pool.seeding = pool.seeding.saturating_sub(1);
            }
            // A seed is a holder from the moment its relay listens.
            if let (Some(port), false) = (port, pool.holders.iter().any(|h| h.ip == ip)) {
                pool.holders.push(Holder { ip, port, serving: 0, failures: 0, arriving: false });
            }
        });
        if corrupted {
            self.board().corrupting = false;
            self.changed.notify_waiters();
        }
        self.delivered(what, ip, bytes, if let Origin::Peer(peer) = origin { Some(peer) } else { None });
        Ok(())
    }

    /// Says once why the image is not relayed, when more than one host could have shared a copy.
    pub(crate) fn note_direct(&self, what: &str, host: IpAddr) {
        if self.allowed.len() < 2 {
            return;
        }
        let reason = self.off_reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(reason) = reason {
            self.progress(CopyEvent::Note {
                what: what.to_string(),
                host,
                message: format!("{reason}: every host gets a direct copy from the workstation"),
            });
        }
    }

    /// The archive of `files` of `rootfs` with `manifest`, built once per apply and set of files.
    pub(crate) async fn archive(
        &self,
        rootfs: &std::path::Path,
        files: &[&str],
        manifest: &str,
    ) -> Result<Arc<Archive>> {
        let key = sha256_hex(format!("{manifest}\0{}", files.join("\0")).as_bytes());
        let cell =
            self.archives.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(key).or_default().clone();
        let rootfs = rootfs.to_path_buf();
        let files: Vec<String> = files.iter().map(|f| f.to_string()).collect();
        let manifest = manifest.as_bytes().to_vec();
        cell.get_or_try_init(|| async move {
            let archive = tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = files.iter().map(String::as_str).collect();
                let manifest_len = manifest.len();
                let stream = super::image::tar(manifest, &rootfs, &refs)?;
                Ok::<_, ProviderError>(Archive::new(stream, manifest_len))
            })
            .await
            .map_err(|e| ProviderError::Local {
                what: "archive",
                path: "the image".into(),
                source: std::io::Error::other(e.to_string()),
            })??;
            Ok(Arc::new(archive))
        })
        .await
        .cloned()
    }

    /// The relay directory on each host.
    fn dir(cx: &Cx) -> String {
        format!("{}/.relay", cluster_dir(&cx.ctx.cluster))
    }

    /// Brings `archive` to `ip`, checked, from a peer when one holds it, else from the workstation, and
    /// installs it; a host that will serve it keeps it in its relay directory and starts its relay: where
    /// the copy came from, and the relay's port when it serves.
    async fn fetch(&self, cx: &Cx, ip: IpAddr, what: &str, install: &Install<'_>) -> Result<(Origin, Option<u16>)> {
        let archive = install.archive;
        self.board().touched.insert(ip);
        let mut excluded: Vec<IpAddr> = vec![ip];
        let mut unreachable: Vec<IpAddr> = Vec::new();
        let mut no_helper = false;
        loop {
            let source = if unreachable.len() >= PEER_TRIES || no_helper {
                self.seed_slot(&archive.tar_sha);
                Source::Workstation
            } else {
                self.source(ip, &archive.tar_sha, &excluded).await
            };
            match source {
                Source::Workstation => {
                    return self.copy_from_workstation(cx, ip, what, install, (&unreachable, no_helper)).await;
                }
                Source::Peer { ip: peer, port, arriving } => {
                    let target = relaying_hosts(self.allowed.len());
                    let serve = self.with_pool(&archive.tar_sha, |pool| {
                        let serve = self.relays.contains(&ip) || pool.relaying < target;
                        pool.relaying += usize::from(serve);
                        serve
                    });
                    let from = Bytes::Peer { ip: peer, port, arriving };
                    let fetched =
                        self.copy(cx, ip, what, from, install, if serve { Serve::After } else { Serve::No }).await;
                    // A host that did not come to serve (its fetch failed, or its relay did not start)
                    // leaves its place to another.
                    if serve && !matches!(fetched, Ok(Fetch::Done(Some(_)))) {
                        self.with_pool(&archive.tar_sha, |pool| pool.relaying = pool.relaying.saturating_sub(1));
                    }
                    if let Ok(Fetch::NoHelper) = &fetched {
                        self.with_pool(&archive.tar_sha, |pool| pool.release(peer, false, false));
                        let message = NO_HELPER_NOTE.into();
                        self.progress(CopyEvent::Note { what: what.to_string(), host: ip, message });
                        // As a host that cannot reach its peers: a direct copy, and it serves nobody.
                        no_helper = true;
                        continue;
                    }
                    let (unusable, lost) = match &fetched {
                        Ok(Fetch::Corrupt) => (true, false),
                        Ok(Fetch::Unreachable) => (false, true),
                        _ => (false, false),
                    };
                    self.with_pool(&archive.tar_sha, |pool| pool.release(peer, unusable, lost));
                    match fetched? {
                        Fetch::Done(port) => return Ok((Origin::Peer(peer), port)),
                        Fetch::Unreachable => unreachable.push(peer),
                        Fetch::NoHelper => {}
                        Fetch::Corrupt => {
                            let message = format!(
                                "the copy from {peer} failed its SHA-256 check: {peer} is no longer a source, \
                                 fetching the copy again"
                            );
                            self.progress(CopyEvent::Note { what: what.to_string(), host: ip, message });
                        }
                    }
                    excluded.push(peer);
                }
            }
        }
    }

    /// The token, then the addresses a relay answers, a line each: a relay's access.
    fn access(&self) -> String {
        let mut access = format!("{}\n", self.token);
        for host in &self.allowed {
            access.push_str(&format!("{host}\n"));
        }
        access
    }

    /// The port a relay start printed, or `None`, said, when it failed.
    fn relay_port(&self, what: &str, ip: IpAddr, stdout: &str) -> Option<u16> {
        if let Some(failed) = stdout.lines().find_map(|l| l.strip_prefix("relay-failed")) {
            let message = format!("cannot relay to its peers: {}", failed.trim());
            self.progress(CopyEvent::Note { what: what.to_string(), host: ip, message });
        }
        stdout.lines().find_map(|l| l.strip_prefix("relay-port ")).and_then(|p| p.trim().parse().ok())
    }

    fn with_pool<T>(&self, sha: &str, f: impl FnOnce(&mut Pool) -> T) -> T {
        let out = f(self.board().pools.entry(sha.to_string()).or_default());
        self.changed.notify_waiters();
        out
    }

    fn seed_slot(&self, sha: &str) {
        self.with_pool(sha, |pool| pool.seeding += 1);
    }

    fn end_seeding(&self, sha: &str) {
        self.with_pool(sha, |pool| pool.seeding = pool.seeding.saturating_sub(1));
    }

    /// Waits for a source of `sha` for `ip`: see [`Pool::pick`]. A host the plan did not name as a seed
    /// may seed after [`SEED_GRACE`] (the planned seed may not need this archive, or may not have started).
    async fn source(&self, ip: IpAddr, sha: &str, excluded: &[IpAddr]) -> Source {
        let grace = tokio::time::Instant::now() + SEED_GRACE;
        loop {
            let may_seed = self.seeds.is_empty() || self.seeds.contains(&ip) || tokio::time::Instant::now() >= grace;
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let picked = {
                // Read at each pick: the test hook's relay may have come since; it is offered first.
                let mut board = self.board();
                let (waiting, prefer) = (board.corrupting, board.corrupted.filter(|_| self.corrupt_first_relay));
                let pool = board.pools.entry(sha.to_string()).or_default();
                if waiting {
                    None
                } else {
                    pool.pick(excluded, prefer, may_seed)
                }
            };
            if let Some(source) = picked {
                return source;
            }
            if may_seed {
                notified.await;
            } else {
                let _ = tokio::time::timeout_at(grace, notified).await;
            }
        }
    }

    /// One command per copy: the copy's bytes taken in as `from` says (unpacked as they arrive, but for a
    /// copy sent before, unpacked then with tar), the rest of the install, then, as `serve` says, the
    /// host's relay. The token and the addresses the relay answers come on stdin (but for the
    /// workstation's stream, which is the whole stdin) and go to the relay on its stdin: never in a command
    /// line (the host's log records them) nor in a file. In bash, as `/dev/tcp` needs it, whatever shell a non-root user's sudo gives.
    async fn copy(
        &self,
        cx: &Cx,
        ip: IpAddr,
        what: &str,
        from: Bytes,
        install: &Install<'_>,
        serve: Serve,
    ) -> Result<Fetch> {
        let archive = install.archive;
        let Some(helper) = &self.helper else { return Ok(Fetch::Unreachable) };
        let qdir = quote(&Self::dir(cx));
        let dest = quote(install.dest);
        // The workstation's stream is the whole stdin: only a fetch and a relay start need the access.
        let reads = if let Bytes::Stdin = from { "" } else { "IFS= read -r token; IFS= read -r -d '' access; " };
        let mut script = format!("{reads}mkdir -p {qdir} && cd {qdir} || exit 1\n");
        if install.fresh {
            script.push_str(&format!("rm -rf {dest} || exit 1\n"));
        }
        let unpack_to = format!("--unpack {dest}{}", if serve == Serve::No { "" } else { " --keep" });
        let unpack = match from {
            Bytes::Peer { ip: peer, port, arriving } => {
                // A copy still arriving comes as fast as the workstation sends it: only silence ends it.
                let seconds = if arriving { DEADLINE_SECS } else { fetch_seconds(archive) };
                script.push_str(&fetch_script(&helper.sha, (peer, port, seconds), archive, &unpack_to));
                String::new()
            }
            Bytes::Stdin => {
                script.push_str(&receive_script(&helper.sha, archive, &unpack_to));
                String::new()
            }
            Bytes::Sent => format!("mkdir -p {dest} && tar -C {dest} -xf {}; ", archive.tar_sha),
        };
        // Not `( … ) || exit`: on the left of `||`, a subshell's `set -e` is ignored.
        script.push_str(&format!("( set -e; {unpack}{}\n); [ $? -eq 0 ] || exit {INSTALL_FAILED}\n", install.then));
        if serve == Serve::After {
            script.push_str(&start_script(&helper.sha, &qdir, ip));
        }
        let access = self.access();
        let stdin = match from {
            Bytes::Stdin => &archive.stream[..],
            _ => access.as_bytes(),
        };
        let out = cx.run_status(ip, &in_bash(&script), stdin).await?;
        match (out.status, from) {
            (0, _) => {}
            (3, Bytes::Peer { .. }) => return Ok(Fetch::Unreachable),
            (4, Bytes::Peer { .. }) => return Ok(Fetch::Corrupt),
            (NO_HELPER, _) => return Ok(Fetch::NoHelper),
            // The workstation's own copy cut short or changed on the way: an error, with the helper's words.
            (status, _) => {
                let what = if status == INSTALL_FAILED { format!("install {what}") } else { format!("copy {what}") };
                return super::remote::succeeded(ip, &what, out).map(|_| Fetch::Done(None));
            }
        }
        Ok(Fetch::Done(self.relay_port(what, ip, &out.stdout_text())))
    }

    /// The test hook: changes a byte of the first relayed host's served copy; whether it did (the host is
    /// then `corrupting` until its caller made it a holder).
    async fn corrupt_if_asked(&self, cx: &Cx, ip: IpAddr, archive: &Archive) -> bool {
        // Claimed before the command: relays that finish together are not all corrupted.
        {
            let mut board = self.board();
            if !self.corrupt_first_relay || board.corrupted.is_some() {
                return false;
            }
            board.corrupted = Some(ip);
            board.corrupting = true;
        }
        let file = quote(&format!("{}/{}", Self::dir(cx), archive.tar_sha));
        let offset = archive.tar().len() / 2;
        let script = format!(
            "c=$(dd if={file} bs=1 skip={offset} count=1 2>/dev/null); if [ \"$c\" = A ]; then n=B; else n=A; fi; \
             printf %s \"$n\" | dd of={file} bs=1 seek={offset} conv=notrunc 2>/dev/null"
        );
        if cx.run(ip, &script, b"").await.is_err() {
            let mut board = self.board();
            (board.corrupted, board.corrupting) = (None, false);
            drop(board);
            self.changed.notify_waiters();
            return false;
        }
        true
    }

    /// Stops every relay of this apply and removes the copies they served. Errors are returned per host;
    /// a relay that could not be stopped still exits on its own when idle.
    pub(crate) async fn stop(&self, cx: &Cx) -> Vec<(IpAddr, ProviderError)> {
        let hosts: Vec<IpAddr> = {
            let mut board = self.board();
            if board.delivered > 0 {
                self.progress(CopyEvent::Summary {
                    copies: board.delivered,
                    workstation_bytes: board.workstation_bytes,
                    peer_bytes: board.peer_bytes,
                });
            }
            // A host found unreachable is not waited for again: its relay ends on its own (the helper
            // exits when idle), and the apply already named the host.
            std::mem::take(&mut board.touched).into_iter().filter(|ip| !cx.remote.known_unreachable(*ip)).collect()
        };
        let script = stop_script(&Self::dir(cx), &cluster_dir(&cx.ctx.cluster));
        let stops = hosts.iter().map(|ip| {
            let script = &script;
            async move { (*ip, cx.run(*ip, script, b"").await) }
        });
        futures_util::future::join_all(stops).await.into_iter().filter_map(|(ip, r)| r.err().map(|e| (ip, e))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A seed whose copy failed frees the seeding slot and its place among the relaying hosts: the next
    /// host seeds instead of waiting for ever for a holder that will never come.
    #[tokio::test]
    async fn a_failed_seed_leaves_its_slot_and_its_place() {
        use crate::cluster::fake::Scripted;
        use crate::cluster::testing::{context, M1};
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = context(None, logs.path());
        ctx.distribution.helper = Some(b"helper".to_vec());
        let remote = Arc::new(Scripted::default().fail("sha256sum -c", 1, "disk full"));
        let p = crate::cluster::ClusterProvider::new(ctx, remote);
        let cx = &p.0;
        let tar = b"archive".to_vec();
        let archive = Archive::new([&b"m"[..], &tar].concat(), 1);
        let failed = cx.relay.deliver(cx, M1, "image", &archive, ("/x", false), |_| String::new()).await;
        assert!(failed.is_err());
        let board = cx.relay.board();
        let pool = &board.pools[&archive.tar_sha];
        assert_eq!((pool.seeding, pool.relaying), (0, 0), "slot and place given back");
    }

    /// A fetch from a seed whose own copy still arrives has no rate bound (its bytes come as fast as the
    /// workstation sends them); from a whole copy, 1 MiB/s at the least. The sizes go with the names.
    #[tokio::test]
    async fn a_fetch_from_a_copy_still_arriving_has_no_rate_bound() {
        use crate::cluster::fake::Scripted;
        use crate::cluster::testing::{context, M1, M2};
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = context(None, logs.path());
        ctx.distribution.helper = Some(b"helper".to_vec());
        let remote = Arc::new(Scripted::default());
        let p = crate::cluster::ClusterProvider::new(ctx, remote.clone());
        let cx = &p.0;
        let archive = Archive::new(b"marchive".to_vec(), 1);
        for arriving in [true, false] {
            cx.relay.with_pool(&archive.tar_sha, |pool| {
                pool.holders = vec![Holder { ip: M1, port: 4100, serving: 0, failures: 0, arriving }];
            });
            cx.relay.deliver(cx, M2, "image", &archive, ("/x", false), |_| String::new()).await.unwrap();
            let fetch = remote.commands(M2).last().unwrap().clone();
            let seconds = if arriving { DEADLINE_SECS } else { fetch_seconds(&archive) };
            let (m, t) = (&archive.manifest_sha, &archive.tar_sha);
            assert!(fetch.contains(&format!(" fetch {M1} 4100 {seconds} {m} 1 {t} 7 ")), "{fetch}");
        }
    }

    /// A seed serves from the moment its relay listens; when the workstation's stream to it then fails,
    /// it is no holder any more, and its slot and place are given back.
    #[tokio::test]
    async fn a_seed_whose_stream_fails_leaves_the_holders() {
        use crate::cluster::fake::Scripted;
        use crate::cluster::testing::{context, M1};
        let logs = tempfile::tempdir().unwrap();
        let mut ctx = context(None, logs.path());
        ctx.distribution.helper = Some(b"helper".to_vec());
        let remote = Arc::new(Scripted::default().on(" start . ", "relay-port 4100").fail(" receive ", 3, "short"));
        let p = crate::cluster::ClusterProvider::new(ctx, remote.clone());
        let cx = &p.0;
        let archive = Archive::new(b"marchive".to_vec(), 1);
        let failed = cx.relay.deliver(cx, M1, "image", &archive, ("/x", false), |_| String::new()).await;
        assert!(failed.unwrap_err().to_string().contains("short"));
        assert!(remote.commands(M1).iter().any(|c| c.contains(" start . ")), "its relay started first");
        let board = cx.relay.board();
        let pool = &board.pools[&archive.tar_sha];
        assert_eq!((pool.seeding, pool.relaying, pool.holders.len()), (0, 0, 0));
    }

    /// The stop script on a real shell: every relay of the directory is stopped, and a pid file whose
    /// process is not a relay of it (its number reused) is left alone.
    #[test]
    fn stop_kills_each_relay_of_its_directory_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("real");
        std::fs::create_dir_all(real.join("c/.relay")).unwrap();
        // The cluster's directory reached through a link, as `/var/lib/sealer` may be.
        std::os::unix::fs::symlink(&real, root.path().join("link")).unwrap();
        let dir = root.path().join("link/c/.relay");
        // Two "relays": copies of sleep run from the relay directory, as the helper runs from there.
        std::fs::copy("/bin/sleep", dir.join("helper")).unwrap();
        let spawn = || {
            // A copy just written may still be open in a child another test forked: "text file busy".
            for _ in 0..50 {
                match std::process::Command::new(dir.join("helper")).arg("30").spawn() {
                    Err(e) if e.raw_os_error() == Some(26) => std::thread::sleep(std::time::Duration::from_millis(20)),
                    spawned => return spawned.unwrap(),
                }
            }
            panic!("the copy of sleep stayed busy")
        };
        let relays: Vec<std::process::Child> = (0..2).map(|_| spawn()).collect();
        let stranger = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        for child in relays.iter().chain([&stranger]) {
            std::fs::write(dir.join(format!("{}.pid", child.id())), child.id().to_string()).unwrap();
        }
        let script = stop_script(dir.to_str().unwrap(), dir.parent().unwrap().to_str().unwrap());
        assert!(std::process::Command::new("sh").args(["-c", &script]).status().unwrap().success());
        for mut child in relays {
            assert!(child.wait().unwrap().code().is_none(), "a relay was killed");
        }
        let mut stranger = stranger;
        assert!(stranger.try_wait().unwrap().is_none(), "a process that is no relay of it lives on");
        let _ = stranger.kill();
        assert!(!real.join("c").exists(), "the emptied cluster directory is gone");
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));
    const C: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 3));

    fn holder(ip: IpAddr) -> Holder {
        Holder { ip, port: 4000, serving: 0, failures: 0, arriving: false }
    }

    #[test]
    fn only_copies_larger_than_64_kib_to_more_than_one_host_are_relayed() {
        assert!(!relayed(64, DIRECT_MAX), "small: straight to each host");
        assert!(relayed(2, DIRECT_MAX + 1));
        assert!(!relayed(1, 1 << 30), "one host: nothing to relay to");
    }

    #[test]
    fn a_few_hosts_relay_enough_to_keep_the_tree_wide() {
        let got: Vec<usize> = [1, 2, 3, 8, 16, 64, 100, 1000].iter().map(|&n| relaying_hosts(n)).collect();
        assert_eq!(got, [1, 2, 3, 4, 4, 8, 10, 32]);
    }

    #[test]
    fn the_first_host_seeds_and_the_next_ones_wait_for_it() {
        let mut pool = Pool::default();
        assert_eq!(pool.pick(&[A], None, true), Some(Source::Workstation));
        assert_eq!(pool.pick(&[B], None, true), None, "a second host waits for the seed, not the workstation");
        pool.seeding = 0;
        pool.holders.push(holder(A));
        assert_eq!(pool.pick(&[B], None, true), Some(Source::Peer { ip: A, port: 4000, arriving: false }));
    }

    #[test]
    fn only_a_planned_seed_seeds_the_first_copy() {
        let mut pool = Pool::default();
        assert_eq!(pool.pick(&[B], None, false), None, "not a planned seed: it waits");
        assert_eq!(pool.pick(&[A], None, true), Some(Source::Workstation));
    }

    #[test]
    fn a_holder_serves_at_most_fanout_peers_and_the_least_busy_goes_first() {
        let mut pool = Pool { holders: vec![holder(A)], seeding: 0, relaying: 0 };
        for _ in 0..FANOUT {
            assert_eq!(pool.pick(&[], None, true), Some(Source::Peer { ip: A, port: 4000, arriving: false }));
        }
        assert_eq!(pool.pick(&[], None, true), None, "a full holder makes the next host wait");
        pool.holders.push(holder(B));
        assert_eq!(pool.pick(&[], None, true), Some(Source::Peer { ip: B, port: 4000, arriving: false }));
        pool.release(A, false, false);
        assert_eq!(pool.holders[0].serving, FANOUT - 1);
    }

    #[test]
    fn a_corrupt_holder_is_dropped_and_an_unreachable_one_after_two_failures() {
        let mut pool = Pool { holders: vec![holder(A), holder(B)], seeding: 0, relaying: 0 };
        pool.release(A, true, false);
        assert_eq!(pool.holders.iter().map(|h| h.ip).collect::<Vec<_>>(), [B]);
        pool.release(B, false, true);
        assert_eq!(pool.holders.len(), 1, "one failure may be the fetcher's own network");
        pool.release(B, false, true);
        assert!(pool.holders.is_empty());
        assert_eq!(pool.pick(&[C], None, true), Some(Source::Workstation), "nobody left: the workstation again");
    }

    #[test]
    fn excluded_holders_are_not_offered_and_prefer_steers_the_pick() {
        let mut pool = Pool { holders: vec![holder(A), holder(B)], seeding: 0, relaying: 0 };
        assert_eq!(pool.pick(&[A], None, true), Some(Source::Peer { ip: B, port: 4000, arriving: false }));
        assert_eq!(pool.pick(&[], Some(B), true), Some(Source::Peer { ip: B, port: 4000, arriving: false }));
        let mut only_a = Pool { holders: vec![holder(A)], seeding: 0, relaying: 0 };
        assert_eq!(only_a.pick(&[A], None, true), Some(Source::Workstation), "every holder excluded: a direct copy");
    }
}
