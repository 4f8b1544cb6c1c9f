//! The copies that come from the workstation: a seed's (streamed to the helper, which serves it as it
//! arrives), and a host's that cannot reach its peers or run the helper.

use super::*;

impl Relay {
    /// The copy from the workstation: as the archive's seed, or as the fallback of a host that could not
    /// reach its peers (`unreachable`) or run the helper (`no_helper`), which then serves nobody. The
    /// helper takes it in from the copy's stdin; a host that cannot run the helper gets the files, then
    /// unpacks them with tar.
    pub(super) async fn copy_from_workstation(
        &self,
        cx: &Cx,
        ip: IpAddr,
        what: &str,
        install: &Install<'_>,
        (unreachable, no_helper): (&[IpAddr], bool),
    ) -> Result<(Origin, Option<u16>)> {
        let archive = install.archive;
        if !unreachable.is_empty() && !no_helper {
            let peers: Vec<String> = unreachable.iter().map(IpAddr::to_string).collect();
            let message =
                format!("cannot reach peer(s) {}: direct copy from the workstation instead", peers.join(", "));
            self.progress(CopyEvent::Note { what: what.to_string(), host: ip, message });
        }
        let origin = if unreachable.is_empty() && !no_helper { Origin::Seed } else { Origin::Fallback };
        if origin == Origin::Seed {
            self.with_pool(&archive.tar_sha, |pool| pool.relaying += 1);
        }
        let mut copied = match no_helper {
            true => Ok(Fetch::NoHelper),
            false => self.stream(cx, ip, what, install, origin == Origin::Seed).await,
        };
        if let Ok(Fetch::NoHelper) = copied {
            if !no_helper {
                let message = NO_HELPER_NOTE.into();
                self.progress(CopyEvent::Note { what: what.to_string(), host: ip, message });
            }
            let files = [(archive.manifest_sha.as_str(), archive.manifest()), (&archive.tar_sha, archive.tar())];
            copied = match self.send(cx, ip, files.into_iter()).await {
                Ok(()) => self.copy(cx, ip, what, Bytes::Sent, install, Serve::No).await,
                Err(e) => Err(e),
            };
        }
        // A seed that did not come to serve leaves its place to another, as a peer does.
        if origin == Origin::Seed && !matches!(copied, Ok(Fetch::Done(Some(_)))) {
            self.with_pool(&archive.tar_sha, |pool| pool.relaying = pool.relaying.saturating_sub(1));
        }
        if !matches!(copied, Ok(Fetch::Done(_))) {
            // Whatever failed, the seeding slot is free again: the next host seeds.
            self.end_seeding(&archive.tar_sha);
        }
        match copied {
            Ok(Fetch::Done(port)) => Ok((origin, port)),
            // A copy sent before runs no helper: it cannot end as a fetch does.
            Ok(_) => Err(ProviderError::Unexpected {
                host: ip,
                what: format!("the copy of {what}"),
                message: "the copy from the workstation ended as a fetch from a peer".into(),
            }),
            Err(e) => Err(e),
        }
    }

    /// The workstation's copy, streamed to the helper it sends first. A seed starts its relay before: its
    /// peers fetch the bytes as they arrive (each checks the whole copy against its digest, as always),
    /// and a seed whose copy then fails is no longer offered.
    async fn stream(&self, cx: &Cx, ip: IpAddr, what: &str, install: &Install<'_>, seed: bool) -> Result<Fetch> {
        if !self.send_helper(cx, ip).await? {
            return Ok(Fetch::NoHelper);
        }
        let port = match (seed, self.corrupt_first_relay) {
            (true, false) => self.start_relay(cx, ip, what, install.archive).await?,
            (true, true) => {
                let copied = self.copy(cx, ip, what, Bytes::Stdin, install, Serve::Keep).await?;
                let Fetch::Done(_) = copied else { return Ok(copied) };
                return Ok(Fetch::Done(self.start_relay(cx, ip, what, install.archive).await?));
            }
            (false, _) => None,
        };
        let Some(port) = port else { return self.copy(cx, ip, what, Bytes::Stdin, install, Serve::No).await };
        let sha = &install.archive.tar_sha;
        self.with_pool(sha, |pool| pool.holders.push(Holder { ip, port, serving: 0, failures: 0, arriving: true }));
        match self.copy(cx, ip, what, Bytes::Stdin, install, Serve::Keep).await {
            Ok(Fetch::Done(_)) => {
                // Still a holder, unless its fetchers dropped it while its copy arrived (it could not be
                // reached): then it serves nobody, as a relay that did not start.
                let kept = self.with_pool(sha, |pool| {
                    pool.holders.iter_mut().find(|h| h.ip == ip).map(|h| h.arriving = false).is_some()
                });
                Ok(Fetch::Done(kept.then_some(port)))
            }
            failed => {
                self.with_pool(sha, |pool| pool.holders.retain(|h| h.ip != ip));
                failed
            }
        }
    }

    /// Starts `ip`'s relay before `archive` arrives: its port, or `None` when it could not start (said).
    /// What an earlier copy left half-way (an apply killed, its relays never stopped) goes first: the
    /// relay would serve it as arriving.
    async fn start_relay(&self, cx: &Cx, ip: IpAddr, what: &str, archive: &Archive) -> Result<Option<u16>> {
        let Some(helper) = &self.helper else { return Ok(None) };
        let dir = Self::dir(cx);
        let parts = [&archive.manifest_sha, &archive.tar_sha].map(|sha| quote(&format!("{dir}/{sha}.part")));
        let script = format!(
            "IFS= read -r token; IFS= read -r -d '' access; rm -f {}\n{}",
            parts.join(" "),
            start_script(&helper.sha, &quote(&dir), ip)
        );
        let out = cx.run(ip, &in_bash(&script), self.access().as_bytes()).await?;
        Ok(self.relay_port(what, ip, &out.stdout_text()))
    }

    /// Files from the workstation into the host's relay directory, each named by its SHA-256 and checked
    /// on arrival (one the host holds is not sent): the relay's executable, or a copy for a host that
    /// cannot run it.
    async fn send<'a>(&self, cx: &Cx, ip: IpAddr, files: impl Iterator<Item = (&'a str, &'a [u8])>) -> Result<()> {
        let dir = Self::dir(cx);
        for (sha, bytes) in files {
            cx.run(ip, &send_script(&dir, sha, ""), bytes).await?;
        }
        Ok(())
    }

    /// Sends the relay's executable (unless the host holds it), and tells whether it runs there (not
    /// another architecture, not a `noexec` mount): asked before any copy streams to it, so that a host
    /// where it cannot run gets the files once.
    async fn send_helper(&self, cx: &Cx, ip: IpAddr) -> Result<bool> {
        let Some(helper) = &self.helper else { return Ok(false) };
        let runs = format!(
            "f={}; chmod 700 \"$f\"; set +e; \"$f\" >/dev/null 2>&1; [ $? -lt 126 ] || exit {NO_HELPER}",
            quote(&format!("{}/{}", Self::dir(cx), helper.sha))
        );
        let out = cx.run_status(ip, &send_script(&Self::dir(cx), &helper.sha, &runs), &helper.bytes).await?;
        match out.status {
            NO_HELPER => Ok(false),
            _ => super::super::remote::succeeded(ip, "send the relay's helper", out).map(|_| true),
        }
    }
}
