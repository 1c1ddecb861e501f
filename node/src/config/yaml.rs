//! A small YAML tree that remembers the line of every key and value.
//!
//! Built from `yaml-rust2`'s event parser, because its own `Yaml` tree drops
//! positions, and the config's errors name the line of the key they are about.
//! Only what a config file needs is kept: mappings with scalar keys, sequences
//! and scalars (as their source text). Aliases and repeated keys are refused,
//! and so is a stream of more than one document.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// One node of a parsed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// A scalar: its text as written (unquoted), and whether it was written plain
    /// (without quotes), which is what lets `null` or `~` mean "not set".
    Scalar { text: String, plain: bool, line: usize },
    /// A sequence.
    Seq { items: Vec<Node>, line: usize },
    /// A mapping whose keys are scalars, in document order.
    Map { entries: Vec<Entry>, line: usize },
}

/// One `key: value` pair of a mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

impl Node {
    /// The line (1-based) where the node starts.
    pub fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::Seq { line, .. } | Node::Map { line, .. } => *line,
        }
    }

    /// True for a plain `null`, `~`, or nothing at all: a key written without a value.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { text, plain: true, .. } if text.is_empty() || text == "~" || text == "null")
    }
}

/// A YAML syntax error, or a construct the config does not accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    /// 1-based line.
    pub line: usize,
    /// What is wrong, for a person.
    pub message: String,
}

/// Parses `text` into one document; an empty text (or one of only comments) is `None`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    // Editors on some systems start UTF-8 files with a byte order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut builder, true) {
        // yaml-rust2 reports "did not find expected key" and the like; strip its
        // own position suffix by taking `info()` and give the line ourselves.
        return Err(SyntaxError { line: e.marker().line(), message: format!("invalid YAML: {}", e.info()) });
    }
    if let Some(error) = builder.error {
        return Err(error);
    }
    if builder.documents.len() > 1 {
        return Err(SyntaxError {
            line: builder.second_document_line,
            message: "invalid config: more than one YAML document (`---`) in the file".into(),
        });
    }
    Ok(builder.documents.pop())
}

/// A node under construction.
enum Open {
    Seq { items: Vec<Node>, line: usize },
    Map { entries: Vec<Entry>, pending_key: Option<(String, usize)>, line: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    documents: Vec<Node>,
    second_document_line: usize,
    error: Option<SyntaxError>,
}

impl Builder {
    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(SyntaxError { line, message });
        }
    }

    /// The dotted path of the mapping being built, for messages (`raft`, `cluster.initial_members[0]`).
    fn open_path(&self) -> String {
        let mut path = String::new();
        for open in &self.stack[..self.stack.len().saturating_sub(1)] {
            match open {
                Open::Map { pending_key: Some((key, _)), .. } => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(key);
                }
                Open::Seq { items, .. } => path.push_str(&format!("[{}]", items.len())),
                Open::Map { pending_key: None, .. } => {}
            }
        }
        path
    }

    /// Hands a finished node to its parent (or to the document list).
    fn push(&mut self, node: Node) {
        let prefix = self.open_path();
        let mut failure = None;
        match self.stack.last_mut() {
            None => {
                if self.documents.len() == 1 {
                    self.second_document_line = node.line();
                }
                self.documents.push(node);
            }
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, pending_key, .. }) => match pending_key.take() {
                Some((key, key_line)) => match entries.iter().find(|e| e.key == key) {
                    Some(first) => {
                        let path = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
                        failure =
                            Some((key_line, format!("duplicate key `{path}` (first at line {})", first.key_line)));
                    }
                    None => entries.push(Entry { key, key_line, value: node }),
                },
                // Keys are taken in `on_event`, and a non-scalar key is refused there.
                None => failure = Some((node.line(), "invalid config: a mapping key must be a plain name".into())),
            },
        }
        if let Some((line, message)) = failure {
            self.fail(line, message);
        }
    }
}

/// How deep collections may nest. A config needs four levels
/// (`cluster.initial_members[0].peer`); the limit bounds the work and memory
/// a file can cause. Found while writing the fuzz tests' deep-nesting case:
/// 100 000 nested `[` took quadratic time (every node's path is computed
/// from the open ones), and the tree's drop would recurse as deep.
pub(crate) const NESTING_MAX: usize = 32;

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        if self.error.is_some() {
            // Only the first problem is reported; building on is wasted work.
            return;
        }
        if matches!(event, Event::SequenceStart(..) | Event::MappingStart(..)) && self.stack.len() >= NESTING_MAX {
            self.fail(line, format!("invalid config: collections nested more than {NESTING_MAX} levels deep"));
            return;
        }
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentStart | Event::DocumentEnd => {}
            Event::Alias(_) => self.fail(line, "invalid config: YAML aliases (`*name`) are not supported".into()),
            Event::Scalar(text, style, _, _) => {
                let plain = style == TScalarStyle::Plain;
                // A scalar that becomes a key gets its line fixed up right here,
                // because `push` cannot see the marker.
                let is_key = matches!(self.stack.last(), Some(Open::Map { pending_key: None, .. }));
                if is_key {
                    if let Some(Open::Map { pending_key, .. }) = self.stack.last_mut() {
                        *pending_key = Some((text, line));
                    }
                } else {
                    self.push(Node::Scalar { text, plain, line });
                }
            }
            Event::SequenceStart(_, _) => self.stack.push(Open::Seq { items: Vec::new(), line }),
            Event::MappingStart(_, _) => self.stack.push(Open::Map { entries: Vec::new(), pending_key: None, line }),
            Event::SequenceEnd | Event::MappingEnd => {
                let node = match self.stack.pop() {
                    Some(Open::Seq { items, line }) => Node::Seq { items, line },
                    Some(Open::Map { entries, line, .. }) => Node::Map { entries, line },
                    // The parser balances start and end events.
                    None => return,
                };
                if matches!(self.stack.last(), Some(Open::Map { pending_key: None, .. })) {
                    self.fail(node.line(), "invalid config: a mapping key must be a plain name".into());
                    return;
                }
                self.push(node);
            }
        }
    }
}
