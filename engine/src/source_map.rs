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

/// Positions of every document of `text`, in order. A text the event parser rejects gives none.
pub fn index(text: &str) -> Vec<DocumentPositions> {
    let mut collector = Collector::default();
    let mut parser = Parser::new_from_str(text);
    match parser.load(&mut collector, true) {
        Ok(()) => collector.documents,
        Err(_) => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_paths_per_document() {
        let text = "a: 1\nspec:\n  hosts:\n    - ips: [10.0.0.1, 10.0.0.2]\n---\nkind: X\n";
        let docs = index(text);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].get("spec.hosts[0].ips[1]"), Some(Position { line: 4, column: 23 }));
        assert_eq!(docs[0].get("spec.hosts"), Some(Position { line: 4, column: 5 }));
        assert_eq!(docs[1].get("kind"), Some(Position { line: 6, column: 7 }));
    }
}
