//! Line and column of every node of a multi-document YAML file, by field path (`spec.hosts[0].ips[1]`).
//!
//! serde_yaml gives values but not their positions, so a second, event-level pass with yaml-rust2 records
//! where each node starts. The two parsers agree on document order; when they do not (a file the event
//! parser rejects), positions are simply absent and diagnostics fall back to the field path.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Positions for one document.
#[derive(Debug, Default)]
pub struct DocumentPositions {
    nodes: HashMap<String, Position>,
    start: Option<Position>,
}

impl DocumentPositions {
    pub fn get(&self, path: &str) -> Option<Position> {
        self.nodes.get(path).copied().or(self.start)
    }
}

#[derive(Debug)]
enum Frame {
    Mapping { path: String, key: Option<String> },
    Sequence { path: String, next: usize },
}

#[derive(Default)]
struct Collector {
    documents: Vec<DocumentPositions>,
    stack: Vec<Frame>,
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

fn position(mark: Marker) -> Position {
    Position { line: mark.line(), column: mark.col() + 1 }
}

impl Collector {
    /// The path of the node that starts now, or `None` when it is a mapping key.
    fn next_node_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Sequence { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Mapping { path, key }) => key.take().map(|k| join(path, &k)),
        }
    }

    fn record(&mut self, path: &str, mark: Marker) {
        if let Some(doc) = self.documents.last_mut() {
            doc.nodes.entry(path.to_string()).or_insert(position(mark));
        }
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::DocumentStart => {
                self.documents.push(DocumentPositions { start: Some(position(mark)), ..Default::default() });
                self.stack.clear();
            }
            Event::Scalar(value, ..) => match self.next_node_path() {
                Some(path) => self.record(&path, mark),
                None => {
                    if let Some(Frame::Mapping { key, .. }) = self.stack.last_mut() {
                        *key = Some(value);
                    }
                }
            },
            Event::Alias(_) => {
                if let Some(path) = self.next_node_path() {
                    self.record(&path, mark);
                }
            }
            Event::MappingStart(..) => {
                let path = self.next_node_path().unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Mapping { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.next_node_path().unwrap_or_default();
                self.record(&path, mark);
                self.stack.push(Frame::Sequence { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

/// How deep YAML nodes may nest; Clusterfile and kubeadm documents need a handful of levels.
pub const MAX_DEPTH: usize = 64;
/// How many nodes a file may expand to once every alias is replaced by what it names.
pub const MAX_EXPANDED_NODES: u64 = 1_000_000;
/// How many bytes of scalars a file may expand to once every alias is replaced by what it names.
pub const MAX_EXPANDED_BYTES: u64 = 64 << 20;

/// Why a file was not read: it breaks a limit, or is not YAML.
#[derive(Debug, PartialEq, Eq)]
pub enum ScanError {
    TooDeep(Position),
    TooLarge(Position),
    Syntax(Position, String),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::TooDeep(_) => write!(f, "nodes nest deeper than the limit of {MAX_DEPTH} levels"),
            ScanError::TooLarge(_) => write!(
                f,
                "the file expands (its aliases replaced) to more than {MAX_EXPANDED_NODES} nodes or {MAX_EXPANDED_BYTES} bytes"
            ),
            ScanError::Syntax(_, message) => write!(f, "invalid YAML: {message}"),
        }
    }
}

impl ScanError {
    pub fn position(&self) -> Position {
        match self {
            ScanError::TooDeep(p) | ScanError::TooLarge(p) | ScanError::Syntax(p, _) => *p,
        }
    }
}

/// Positions of every document of `text`, in order, from one pass over its events that also bounds what
/// reading it may cost: nesting depth and the size it expands to through aliases are checked before any
/// value is built, in time linear in the text (no recursion: a deep file cannot overflow the stack).
pub fn index(text: &str) -> Result<Vec<DocumentPositions>, ScanError> {
    let mut collector = Collector::default();
    let mut parser = Parser::new_from_str(text);
    // Per document: the expanded size of each anchor, and the containers open with where they began.
    let mut anchors: HashMap<usize, (u64, u64)> = HashMap::new();
    let mut open: Vec<(usize, u64, u64)> = Vec::new();
    let (mut nodes, mut bytes) = (0u64, 0u64);
    loop {
        let (event, mark) =
            parser.next_token().map_err(|e| ScanError::Syntax(position(*e.marker()), e.info().to_string()))?;
        match &event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                anchors.clear();
                open.clear();
            }
            Event::Scalar(value, _, anchor, _) => {
                nodes += 1;
                bytes += value.len() as u64;
                if *anchor > 0 {
                    anchors.insert(*anchor, (1, value.len() as u64));
                }
            }
            Event::Alias(id) => {
                let (n, b) = anchors.get(id).copied().unwrap_or((1, 0));
                nodes = nodes.saturating_add(n);
                bytes = bytes.saturating_add(b);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                open.push((*anchor, nodes, bytes));
                nodes += 1;
                if open.len() > MAX_DEPTH {
                    return Err(ScanError::TooDeep(position(mark)));
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some((anchor, n0, b0)) = open.pop().filter(|(anchor, ..)| *anchor > 0) {
                    anchors.insert(anchor, (nodes - n0, bytes - b0));
                }
            }
            _ => {}
        }
        if nodes > MAX_EXPANDED_NODES || bytes > MAX_EXPANDED_BYTES {
            return Err(ScanError::TooLarge(position(mark)));
        }
        collector.on_event(event, mark);
    }
    Ok(collector.documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths_per_document() {
        let text = "a: 1\nspec:\n  hosts:\n    - ips: [10.0.0.1, 10.0.0.2]\n---\nkind: X\n";
        let docs = index(text).unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get("spec.hosts[0].ips[1]"), Some(Position { line: 4, column: 23 }));
        assert_eq!(docs[0].get("spec.hosts"), Some(Position { line: 4, column: 5 }));
        assert_eq!(docs[1].get("kind"), Some(Position { line: 6, column: 7 }));
    }

    #[test]
    fn depth_and_alias_expansion_are_bounded_before_anything_is_built() {
        let deep = format!("{}x\n", "- ".repeat(30_000));
        assert!(matches!(index(&deep), Err(ScanError::TooDeep(Position { line: 1, .. }))));
        let flow = format!("{}x{}", "{a: ".repeat(40_000), "}".repeat(40_000));
        // yaml-rust2 stops deep flow collections itself ("recursion limit exceeded"): refused either way.
        assert!(matches!(index(&flow), Err(ScanError::TooDeep(_) | ScanError::Syntax(..))));
        let items = vec!["x"; 5000].join(",");
        let refs = vec!["*a"; 5000].join(",");
        let bomb = format!("a: &a [{items}]\nb: [{refs}]\n");
        assert!(matches!(index(&bomb), Err(ScanError::TooLarge(Position { line: 2, .. }))));
        let nested = "a: &a {x: 1}\nb: &b [*a, *a]\nc: [*b, *b]\n";
        assert!(index(nested).is_ok(), "small aliases are fine");
        assert!(matches!(index("a: [b\n"), Err(ScanError::Syntax(..))));
    }
}
