//! `hostname.IP`: the name a host has.

use super::{schema, Known, Rules};

schema! {
    pub struct Hostname for Hostname {
        /// The declared name, or the host's own (learned at apply) when nobody declared one.
        name: Known<String>,
        /// The name the host had before, learned at the first apply, given back on request when it leaves.
        original: Known<String>,
    }
}

fn is_host_name(s: &str) -> bool {
    (1..=253).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl Rules for Hostname {
    fn problems(&self) -> Vec<String> {
        [("name", &self.name), ("original", &self.original)]
            .into_iter()
            .filter_map(|(k, n)| {
                n.known().filter(|n| !is_host_name(n)).map(|n| format!("`{k}` `{n}` is not a hostname"))
            })
            .collect()
    }
}
