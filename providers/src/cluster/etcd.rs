//! The ETCD plugin's work: a real `etcdctl snapshot save` on the first master, brought to the directory
//! its data names on the operator's machine (default `.sealer/backups`), checksum verified.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use sealer_engine::schema::{self, Known};
use sha2::Digest as _;

use super::remote::Result;
use super::{cluster_dir, Cx};
use crate::error::ProviderError;
use crate::shell::quote;

/// `etcdctl ARGS` against the member on the host it runs on. A kubeadm cluster's etcd speaks TLS with the
/// certificates kubeadm made; without them (the test image's etcd), plain HTTP on loopback.
fn etcdctl(args: &str) -> String {
    format!(
        "pki=/etc/kubernetes/pki/etcd && if [ -f $pki/ca.crt ]; then \
         tls=\"--endpoints https://127.0.0.1:2379 --cacert $pki/ca.crt --cert $pki/healthcheck-client.crt \
         --key $pki/healthcheck-client.key\"; else tls=\"--endpoints http://127.0.0.1:2379\"; fi && \
         ETCDCTL_API=3 etcdctl $tls {args}"
    )
}

/// The id of the member whose peer URL is on `ip`, in `etcdctl member list` output
/// (`ID, STATUS, NAME, PEER ADDRS, CLIENT ADDRS, IS LEARNER`).
fn member_on(list: &str, ip: IpAddr) -> Option<String> {
    let peer = match ip {
        IpAddr::V4(_) => format!("://{ip}:"),
        IpAddr::V6(_) => format!("://[{ip}]:"),
    };
    list.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let id = fields.first()?;
        let peers = fields.get(3)?;
        (id.bytes().all(|b| b.is_ascii_hexdigit()) && !id.is_empty() && peers.contains(&peer)).then(|| id.to_string())
    })
}

impl Cx {
    /// Removes the etcd member of the master on `ip` (a host that is gone: `kubeadm reset` cannot run
    /// there to do it), through the etcd of the first master. A member already removed is no error.
    pub(super) async fn remove_etcd_member(&self, ip: IpAddr) -> Result<()> {
        let first = self.ctx.first_master;
        let list = self.output(first, &self.with_image_path(&etcdctl("member list"))).await?;
        if let Some(id) = member_on(&list, ip) {
            self.run(first, &self.with_image_path(&etcdctl(&format!("member remove {id}"))), b"").await?;
        }
        Ok(())
    }

    /// Whether the etcd member of the master on `ip` has started (`etcdctl member list` through the first
    /// master says `started` for the member whose peer URL is on it).
    pub(super) async fn etcd_member_started(&self, ip: IpAddr) -> Result<bool> {
        let list = self.output(self.ctx.first_master, &self.with_image_path(&etcdctl("member list"))).await?;
        let id = member_on(&list, ip);
        Ok(list.lines().any(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            id.as_deref() == fields.first().copied() && fields.get(1) == Some(&"started")
        }))
    }

    pub(super) async fn etcd_backup(&self, ip: IpAddr, mut after: schema::Plugin) -> Result<schema::Plugin> {
        let dir = after.data.as_deref().map(|d| d.trim().to_string()).filter(|d| !d.is_empty());
        let dir = PathBuf::from(dir.unwrap_or_else(|| ".sealer/backups".into()));
        let stamp =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let name = format!("etcd-{}-{stamp}.db", self.ctx.cluster);
        let remote = format!("{}/backup/{name}", cluster_dir(&self.ctx.cluster));
        let q = quote(&remote);
        let save = format!("mkdir -p \"$(dirname {q})\" && {}", etcdctl(&format!("snapshot save {q}")));
        self.run(ip, &self.with_image_path(&save), b"").await?;
        let local = dir.join(&name);
        let fetched = self.download(ip, &remote, &local).await;
        self.run(ip, &format!("rm -f {q}"), b"").await?;
        let (sha256, bytes) = fetched?;
        after.snapshot = Some(Known::Is(local.display().to_string()));
        after.sha256 = Some(Known::Is(sha256));
        after.bytes = Some(Known::Is(i64::try_from(bytes).unwrap_or(i64::MAX)));
        Ok(after)
    }

    /// Copies a file of `ip` to `local` (written whole or not at all) and returns its SHA-256 and size,
    /// refusing it when the bytes that arrived do not have the checksum the host computed.
    async fn download(&self, ip: IpAddr, remote: &str, local: &Path) -> Result<(String, usize)> {
        let expected = self.output(ip, &format!("sha256sum {}", quote(remote))).await?;
        let expected = expected.split_whitespace().next().unwrap_or_default().to_string();
        self.log(ip, &format!("# download {remote} to {}", local.display()));
        let content = self.remote.download(ip, remote).await?;
        let actual = format!("{:x}", sha2::Sha256::digest(&content));
        if actual != expected {
            return Err(ProviderError::Checksum { host: ip, path: remote.to_string(), actual, expected });
        }
        self.log(ip, &format!("# downloaded {} bytes, sha256 {actual}", content.len()));
        let io = |source| ProviderError::Local { what: "write", path: local.display().to_string(), source };
        // A snapshot holds every Secret of the cluster.
        crate::private::write_private(local, &content).map_err(io)?;
        Ok((actual, content.len()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sealer_engine::{Action, Kind, Value};
    use sha2::Digest as _;

    use crate::cluster::testing::*;

    const SNAPSHOT: &[u8] = b"\x00etcd snapshot bytes\xff";

    fn remote(checksum: &str) -> Arc<Scripted> {
        Arc::new(Scripted::default().on("sha256sum", &format!("{checksum}  /x")).downloads(SNAPSHOT))
    }

    #[tokio::test]
    async fn the_snapshot_arrives_checked_and_the_host_copy_goes() {
        let sum = format!("{:x}", sha2::Sha256::digest(SNAPSHOT));
        let remote = remote(&sum);
        let dir = tempfile::tempdir().unwrap();
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("type", Value::text("ETCD")), ("data", Value::text(dir.path().display().to_string()))]);
        let got = apply(&p, change(Kind::Plugin, "e.PostInstall.10.0.0.2", M1, Action::Create, None, Some(after)))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got["sha256"], Value::text(&sum));
        assert_eq!(got["bytes"], Value::Int(SNAPSHOT.len() as i64));
        let Value::Text(local) = &got["snapshot"] else { panic!("no snapshot path") };
        assert_eq!(std::fs::read(local).unwrap(), SNAPSHOT);
        // Every Secret of the cluster is in it: 0600 (the user's directory keeps its mode; one sealer makes
        // is 0700, see `private`).
        let mode = std::fs::metadata(local).unwrap().permissions();
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777, 0o600);
        let commands = remote.commands(M1);
        assert!(commands[0].contains("etcdctl $tls snapshot save"), "{commands:?}");
        assert!(commands[1].starts_with("sha256sum /var/lib/sealer/c/backup/etcd-c-"), "{commands:?}");
        assert!(commands[2].starts_with("download /var/lib/sealer/c/backup/etcd-c-"), "{commands:?}");
        assert!(commands[3].starts_with("rm -f /var/lib/sealer/c/backup/etcd-c-"), "{commands:?}");
    }

    #[tokio::test]
    async fn a_damaged_snapshot_is_not_kept() {
        let remote = remote("0000");
        let dir = tempfile::tempdir().unwrap();
        let (p, _logs) = provider(remote.clone());
        let after = attrs([("type", Value::text("ETCD")), ("data", Value::text(dir.path().display().to_string()))]);
        let err =
            failure(&p, change(Kind::Plugin, "e.PostInstall.10.0.0.2", M1, Action::Create, None, Some(after))).await;
        assert!(err.contains("the host computed 0000: not kept"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(remote.commands(M1).last().unwrap().starts_with("rm -f "), "the host copy goes even then");
    }
}
