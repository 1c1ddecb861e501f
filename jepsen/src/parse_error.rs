//! The error both history parsers return: a line number and what is wrong.

use std::fmt;

use crate::history::HistoryError;

/// How much of an offending input a [`ParseError`] quotes, in characters.
const QUOTE_CHARS_MAX: usize = 64;

/// Why a history could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The 1-based line the problem is on (for EDN: where the offending form
    /// starts).
    pub line: u64,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong with one line or form of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The line is not valid JSON, or not a JSON object.
    Json(String),
    /// The text is not valid EDN (of the supported subset).
    Edn(String),
    /// A required field is absent.
    MissingField(&'static str),
    /// A field is present but holds something unusable.
    BadField {
        /// The field's name.
        field: &'static str,
        /// What the field should hold.
        expected: &'static str,
        /// What it holds, quoted and truncated.
        found: String,
    },
    /// A line is longer than the reader accepts.
    LineTooLong {
        /// The longest accepted line, in bytes.
        line_bytes_max: u64,
    },
    /// Reading failed, or the bytes are not UTF-8.
    Io(String),
    /// The event is well formed but cannot follow the events before it.
    History(HistoryError),
}

impl ParseError {
    /// A [`ParseErrorKind::BadField`] error; `found` is truncated for display.
    pub(crate) fn bad_field(line: u64, field: &'static str, expected: &'static str, found: &str) -> ParseError {
        ParseError { line, kind: ParseErrorKind::BadField { field, expected, found: quote(found) } }
    }
}

/// Truncates `text` to [`QUOTE_CHARS_MAX`] characters, marking the cut, so
/// that hostile input cannot make error messages huge.
pub(crate) fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let mut quoted: String = chars.by_ref().take(QUOTE_CHARS_MAX).collect();
    if chars.next().is_some() {
        quoted.push_str("...");
    }
    quoted
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            ParseErrorKind::Json(message) => write!(f, "invalid JSON: {message}"),
            ParseErrorKind::Edn(message) => write!(f, "invalid EDN: {message}"),
            ParseErrorKind::MissingField(field) => write!(f, "missing field `{field}`"),
            ParseErrorKind::BadField { field, expected, found } => {
                write!(f, "field `{field}`: expected {expected}, found {found}")
            }
            ParseErrorKind::LineTooLong { line_bytes_max } => {
                write!(f, "line longer than {line_bytes_max} bytes")
            }
            ParseErrorKind::Io(message) => write!(f, "read failed: {message}"),
            ParseErrorKind::History(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for ParseError {}
