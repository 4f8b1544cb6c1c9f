//! Mutation fuzzing of sealer's inputs: the seeds are the repository's own Clusterfiles, the
//! documentation's examples and the regression corpus; each input is a seed with a few random edits of
//! the kinds that broke readers before (nesting, aliases, ranges, tags, huge repetitions, splices).
//! Deterministic: the same seed number gives the same inputs.

use std::path::Path;

use crate::repo_root;

/// A small xorshift generator: reproducible runs without a dependency.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// Fragments that made readers misbehave, inserted at random places.
const TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "- ",
    "{a: ",
    "[",
    "]",
    "}",
    "!!int ",
    "!!bool ",
    "!!binary ",
    "? ",
    ": ",
    "|\n",
    ">-\n",
    "\t",
    "---\n",
    "...\n",
    "'",
    "\"",
    "\\",
    "%YAML 1.2\n",
    "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
    "10.0.0.0-10.255.255.255",
    "0.0.0.0-255.255.255.255",
    "10.0.0.2-10.0.0.1",
    "fd00::1-fd00::ffff",
    "${HOME}",
    "$(true)",
    "`id`",
    "\u{0}",
    "\u{feff}",
    "node-role.kubernetes.io/master=",
    "PreInit|PreJoin",
    "99999999999999999999999",
    "-1",
    "1e999",
    "null",
    "~",
    "on: ",
    "type: ",
    "data: |\n    ",
    "roles: [master]\n",
];

fn read_dir_files(dir: &Path, out: &mut Vec<Vec<u8>>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            read_dir_files(&p, out);
        } else if let Ok(bytes) = std::fs::read(&p) {
            out.push(bytes);
        }
    }
}

/// The Clusterfiles to start from.
pub fn clusterfile_seeds() -> Vec<Vec<u8>> {
    let root = repo_root();
    let mut seeds = Vec::new();
    for example in ["single-node", "ha-plugins", "env-config-kubeadm", "v1alpha1"] {
        if let Ok(b) = std::fs::read(root.join("examples").join(example).join("Clusterfile")) {
            seeds.push(b);
        }
    }
    read_dir_files(&root.join("tests/docs-examples"), &mut seeds);
    read_dir_files(&root.join("tests/fuzz-corpus/clusterfiles"), &mut seeds);
    // The corpus' bombs are kept whole as seeds but are too big to be useful bases for edits.
    seeds.retain(|s| s.len() < 64 << 10);
    seeds
}

/// The Kubefiles to start from.
pub fn kubefile_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![
        b"FROM scratch\nCOPY a.txt etc/\nRUN true\nCMD kubectl apply -f manifests/\n".to_vec(),
        b"ARG V=1\nFROM scratch\nENV A=$V\nLABEL x=\"y z\"\nCOPY link_out d\nCOPY a.txt d/\n".to_vec(),
        std::fs::read(repo_root().join("examples/images/simulated-k8s/Kubefile")).unwrap_or_default(),
    ];
    read_dir_files(&repo_root().join("tests/fuzz-corpus/kubefiles"), &mut seeds);
    seeds
}

/// `seed` with one to four random edits, sometimes spliced with `other`.
pub fn mutate(seed: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let at = rng.below(data.len() + 1);
        match rng.below(9) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => {
                let end = (at + rng.below(64)).min(data.len());
                data.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(128)).min(data.len());
                let chunk = data[at..end].to_vec();
                for _ in 0..rng.below(8) {
                    data.splice(at..at, chunk.iter().copied());
                }
            }
            3 | 4 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                data.splice(at..at, token.iter().copied());
            }
            5 => {
                let cut = rng.below(other.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[cut..]);
            }
            6 => {
                // A line repeated many times: wide lists, long data.
                let start = data[..at].iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                let end = data[at..].iter().position(|b| *b == b'\n').map_or(data.len(), |i| at + i + 1);
                let line = data[start..end].to_vec();
                for _ in 0..rng.below(300) {
                    data.splice(end..end, line.iter().copied());
                }
            }
            7 => {
                // Deep nesting.
                let open = ["- ", "[", "{a: "][rng.below(3)];
                let depth = rng.below(5000);
                data.splice(at..at, open.repeat(depth).into_bytes());
            }
            _ => {
                // An anchor and many aliases to it.
                let refs = vec!["*x"; rng.below(3000)].join(", ");
                let bomb = format!("\nx: &x [{}]\ny: [{refs}]\n", vec!["v"; rng.below(3000)].join(", "));
                data.splice(at..at, bomb.into_bytes());
            }
        }
    }
    data
}
