//! `host.IP`: a machine of the cluster and how sealer logs in to it.

use super::{schema, Known, Rules, Secret};

schema! {
    /// What the Clusterfile says of the login, and facts pinned on first contact (they never cause a change
    /// by themselves).
    pub struct Host for Host {
        /// `master` or `node`: a host changing role leaves the cluster and joins again.
        role: String [replaces],
        ssh_user: String,
        ssh_port: i64,
        /// How it logs in: `key`, `password`, `key, then password` or `agent`.
        ssh_auth: String,
        ssh_password: Option<Secret>,
        ssh_private_key: Option<String>,
        ssh_key_passphrase: Option<Secret>,
        os: Known<String>,
        /// The kernel release (`uname -r`): what a container runtime or a CNI may need.
        kernel: Known<String>,
        arch: Known<String>,
        cpus: Known<i64>,
        memory_kib: Known<i64>,
        /// The host key seen at first contact: a later one that differs is refused.
        host_key: Known<String>,
    }
}

impl Host {
    /// The names of the login secrets a host record seals in the state: each sealed text is bound to its
    /// attribute's name, so these never change.
    pub const PASSWORD: &'static str = "ssh_password";
    pub const KEY_PASSPHRASE: &'static str = "ssh_key_passphrase";
}

impl Rules for Host {
    fn problems(&self) -> Vec<String> {
        let u = &self.ssh_user;
        let bad = u.is_empty() || u.len() > 32 || !u.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
        if bad {
            vec![format!("`{u}` is not a user name")]
        } else {
            vec![]
        }
    }
}
