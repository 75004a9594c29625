//! Maps a field path (`functions[0].aliases[1].version`) to its line in a YAML document.
//!
//! serde gives us typed structs but forgets positions; validation errors are reported by
//! field path. Only when there is something to report do we walk the document's event
//! stream once more, with positions, to point an operator at the right line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line numbers (1-based) of every mapping key and sequence item in a document.
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

enum Frame {
    /// A mapping: `pending_key` is the key whose value comes next, if any.
    Mapping {
        path: String,
        pending_key: Option<String>,
    },
    Sequence {
        path: String,
        next_index: usize,
    },
}

#[derive(Default)]
struct Collector {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl LineIndex {
    pub fn new(source: &str) -> Self {
        let mut collector = Collector::default();
        let mut parser = Parser::new_from_str(source);
        // A syntax error leaves a partial index, which still helps for earlier fields.
        let _partial = parser.load(&mut collector, false);
        LineIndex { lines: collector.lines }
    }

    /// The line of `path`, or of its nearest ancestor that appears in the document
    /// (a defaulted field such as a trigger's path has no line of its own).
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

// === impl Collector ===

impl Collector {
    /// Called for every node that starts a value; returns the path that value lives at.
    fn enter_value(&mut self, line: usize) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Mapping { pending_key, .. }) => {
                // In a mapping, a node is either a key (no pending key) or a value.
                pending_key.take()
            }
            Some(Frame::Sequence { path, next_index }) => {
                let item = format!("{path}[{next_index}]");
                *next_index += 1;
                self.lines.entry(item.clone()).or_insert(line);
                Some(item)
            }
        }
    }

    fn on_scalar(&mut self, value: String, line: usize) {
        let is_key = matches!(self.stack.last(), Some(Frame::Mapping { pending_key: None, .. }));
        if is_key {
            if let Some(Frame::Mapping { path, pending_key }) = self.stack.last_mut() {
                let full = if path.is_empty() { value } else { format!("{path}.{value}") };
                self.lines.entry(full.clone()).or_insert(line);
                *pending_key = Some(full);
            }
        } else {
            self.enter_value(line);
        }
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        match event {
            Event::Scalar(value, ..) => self.on_scalar(value, line),
            Event::MappingStart(..) => {
                let path = self.enter_value(line).unwrap_or_default();
                self.stack.push(Frame::Mapping { path, pending_key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.enter_value(line).unwrap_or_default();
                self.stack.push(Frame::Sequence { path, next_index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Alias(_) => {
                self.enter_value(line);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_keys_and_items() {
        let doc = "project_id: p\nfunctions:\n  - name: hello\n    aliases:\n      - name: prod\n        additional_version_weights: { v9: 10 }\n";
        let index = LineIndex::new(doc);
        assert_eq!(index.line_of("project_id"), Some(1));
        assert_eq!(index.line_of("functions[0]"), Some(3));
        assert_eq!(index.line_of("functions[0].aliases[0].name"), Some(5));
        assert_eq!(index.line_of("functions[0].aliases[0].additional_version_weights.v9"), Some(6));
        // A field that is absent falls back to its parent.
        assert_eq!(index.line_of("functions[0].aliases[0].sticky"), Some(5));
    }

    #[test]
    fn json_documents_are_indexed_too() {
        let doc = "{\"project_id\": \"p\",\n \"functions\": [\n  {\"name\": \"a\",\n   \"upstream\": \"x\"}]}";
        let index = LineIndex::new(doc);
        assert_eq!(index.line_of("functions[0].upstream"), Some(4));
    }
}
