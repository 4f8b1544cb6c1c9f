//! Who holds each archive and who may fetch from whom: the relay's bookkeeping, no I/O.

use super::*;

/// Where a host gets its copy from.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Source {
    Workstation,
    /// A holder; `arriving` while its own copy still arrives (a seed's).
    Peer {
        ip: IpAddr,
        port: u16,
        arriving: bool,
    },
}

#[derive(Debug)]
pub(super) struct Holder {
    pub(super) ip: IpAddr,
    pub(super) port: u16,
    pub(super) serving: usize,
    pub(super) failures: usize,
    /// Serving its copy while it still arrives (a seed's, from the workstation).
    pub(super) arriving: bool,
}

/// Who holds one archive, and who is copying it from the workstation.
#[derive(Debug, Default)]
pub(super) struct Pool {
    pub(super) holders: Vec<Holder>,
    pub(super) seeding: usize,
    /// Hosts that hold, or are fetching, a copy they will serve.
    pub(super) relaying: usize,
}

impl Pool {
    /// A source for a host that must not use `excluded`, or `None` to wait: a holder with a free slot
    /// (the least busy; `prefer` first), else the workstation when nobody holds or is seeding the archive
    /// and the host `may_seed` (or fetches it again).
    pub(super) fn pick(&mut self, excluded: &[IpAddr], prefer: Option<IpAddr>, may_seed: bool) -> Option<Source> {
        let usable = |h: &&mut Holder| !excluded.contains(&h.ip);
        if let Some(h) = self
            .holders
            .iter_mut()
            .filter(usable)
            .filter(|h| h.serving < FANOUT)
            .min_by_key(|h| (Some(h.ip) != prefer, h.serving))
        {
            h.serving += 1;
            return Some(Source::Peer { ip: h.ip, port: h.port, arriving: h.arriving });
        }
        let any_usable = self.holders.iter().any(|h| !excluded.contains(&h.ip));
        // The first copy of all goes to a planned seed; a copy again (every holder excluded) to anyone.
        if !any_usable && self.seeding == 0 && (may_seed || !self.holders.is_empty() || excluded.len() > 1) {
            self.seeding += 1;
            return Some(Source::Workstation);
        }
        None
    }

    /// A fetch from `ip` ended; `unusable` drops it as a source, `unreachable` counts against it.
    pub(super) fn release(&mut self, ip: IpAddr, unusable: bool, unreachable: bool) {
        if let Some(h) = self.holders.iter_mut().find(|h| h.ip == ip) {
            h.serving = h.serving.saturating_sub(1);
            h.failures += usize::from(unreachable);
        }
        self.holders.retain(|h| h.ip != ip || !(unusable || h.failures >= HOLDER_FAILURES));
    }
}

#[derive(Default)]
pub(super) struct Board {
    pub(super) pools: HashMap<String, Pool>,
    /// Hosts with a `.relay` directory, to clean at the end.
    pub(super) touched: BTreeSet<IpAddr>,
    /// The test hook's relay, once it serves a corrupted copy.
    pub(super) corrupted: Option<IpAddr>,
    /// The test hook's relay while its copy is being corrupted and it is not a holder yet: no fetch picks
    /// a source meanwhile, so that one comes to it (else every host left may have taken another source).
    pub(super) corrupting: bool,
    pub(super) delivered: usize,
    pub(super) workstation_bytes: u64,
    pub(super) peer_bytes: u64,
}
