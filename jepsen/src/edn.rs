//! A small EDN reader: enough of EDN to read Jepsen's `history.edn`.
//!
//! Understood: `nil`, `true`, `false`, integers (with an optional sign and an
//! optional `N` suffix, when they fit in `i64`), strings with the usual
//! escapes, keywords, symbols, lists, vectors, maps, sets, tagged elements
//! (`#tag form`, e.g. `#jepsen.history.Op{...}`: the tag is kept, the form
//! read), `#_` discards, `;` comments, and commas as whitespace. Other numbers
//! (floats, ratios, big integers) and character literals are kept as opaque
//! text. Nesting is bounded by [`EDN_DEPTH_MAX`], so hostile input yields an
//! error rather than a stack overflow.

/// The deepest nesting of collections the reader accepts.
pub(crate) const EDN_DEPTH_MAX: u32 = 64;

/// One EDN value together with the 1-based line it starts on.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    /// The line the value's first character is on.
    pub(crate) line: u64,
    /// The value.
    pub(crate) value: Edn,
}

/// An EDN value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Edn {
    Nil,
    Bool(bool),
    Int(i64),
    /// A number that is not an `i64`, or a character literal, as written.
    Opaque(String),
    String(String),
    /// A keyword without its leading colon: `:ok` is `Keyword("ok")`.
    Keyword(String),
    Symbol(String),
    List(Vec<Node>),
    Vector(Vec<Node>),
    Map(Vec<(Node, Node)>),
    Set(Vec<Node>),
    /// `#tag form`, with the tag without its `#`.
    Tagged(String, Box<Node>),
}

/// Why EDN text could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EdnError {
    /// The 1-based line the problem is on.
    pub(crate) line: u64,
    /// What is wrong.
    pub(crate) message: String,
}

/// Reads every top-level form in `text`.
pub(crate) fn read_all(text: &str) -> Result<Vec<Node>, EdnError> {
    let mut reader = Reader { text, position: 0, line: 1 };
    let mut forms = Vec::new();
    loop {
        reader.skip_whitespace();
        if reader.peek().is_none() {
            return Ok(forms);
        }
        if let Some(node) = reader.read_form(0)? {
            forms.push(node);
        }
    }
}

struct Reader<'a> {
    text: &'a str,
    /// Byte offset of the next unread character.
    position: usize,
    /// The line `position` is on.
    line: u64,
}

fn is_delimiter(byte: u8) -> bool {
    byte.is_ascii_whitespace() || matches!(byte, b',' | b'(' | b')' | b'[' | b']' | b'{' | b'}' | b'"' | b';')
}

impl Reader<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.position).copied()
    }

    fn error(&self, message: impl Into<String>) -> EdnError {
        EdnError { line: self.line, message: message.into() }
    }

    /// Advances past one byte that is known not to start a multi-byte char.
    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.position += 1;
    }

    fn skip_whitespace(&mut self) {
        while let Some(byte) = self.peek() {
            if byte.is_ascii_whitespace() || byte == b',' {
                self.bump();
            } else if byte == b';' {
                while let Some(byte) = self.peek() {
                    if byte == b'\n' {
                        break;
                    }
                    self.position += 1;
                }
            } else {
                return;
            }
        }
    }

    /// Reads the characters up to the next delimiter. Delimiters are ASCII, so
    /// the slice boundaries are character boundaries.
    fn token(&mut self) -> &str {
        let start = self.position;
        while let Some(byte) = self.peek() {
            if is_delimiter(byte) {
                break;
            }
            self.position += 1;
        }
        self.text.get(start..self.position).unwrap_or("")
    }

    /// Reads one form; `None` when the form was a `#_` discard.
    fn read_form(&mut self, depth: u32) -> Result<Option<Node>, EdnError> {
        if depth > EDN_DEPTH_MAX {
            return Err(self.error(format!("nested deeper than {EDN_DEPTH_MAX}")));
        }
        self.skip_whitespace();
        let line = self.line;
        let Some(byte) = self.peek() else {
            return Err(self.error("unexpected end of input"));
        };
        let value = match byte {
            b'(' => {
                self.bump();
                Edn::List(self.read_sequence(b')', depth)?)
            }
            b'[' => {
                self.bump();
                Edn::Vector(self.read_sequence(b']', depth)?)
            }
            b'{' => {
                self.bump();
                let items = self.read_sequence(b'}', depth)?;
                if items.len() % 2 != 0 {
                    return Err(EdnError { line, message: "map with an odd number of forms".into() });
                }
                let mut entries = Vec::with_capacity(items.len() / 2);
                let mut items = items.into_iter();
                while let (Some(key), Some(value)) = (items.next(), items.next()) {
                    entries.push((key, value));
                }
                Edn::Map(entries)
            }
            b')' | b']' | b'}' => {
                return Err(self.error(format!("unexpected `{}`", char::from(byte))));
            }
            b'"' => {
                self.bump();
                Edn::String(self.read_string()?)
            }
            b'#' => return self.read_dispatch(line, depth),
            b':' => {
                self.bump();
                let name = self.token();
                if name.is_empty() {
                    return Err(self.error("empty keyword"));
                }
                Edn::Keyword(name.to_owned())
            }
            b'\\' => {
                self.bump();
                // A character literal such as `\a` or `\newline`; the first
                // character may itself be a delimiter, as in `\(`.
                let start = self.position - 1;
                if let Some(first) = self.text.get(self.position..).and_then(|s| s.chars().next()) {
                    if first == '\n' {
                        self.line += 1;
                    }
                    self.position += first.len_utf8();
                }
                self.token();
                Edn::Opaque(self.text.get(start..self.position).unwrap_or("").to_owned())
            }
            _ => atom(self.token()),
        };
        Ok(Some(Node { line, value }))
    }

    fn read_sequence(&mut self, close: u8, depth: u32) -> Result<Vec<Node>, EdnError> {
        let open_line = self.line;
        let mut items = Vec::new();
        loop {
            self.skip_whitespace();
            match self.peek() {
                None => {
                    let message = format!("unclosed collection opened on line {open_line}");
                    return Err(self.error(message));
                }
                Some(byte) if byte == close => {
                    self.bump();
                    return Ok(items);
                }
                Some(_) => {
                    if let Some(node) = self.read_form(depth + 1)? {
                        items.push(node);
                    }
                }
            }
        }
    }

    fn read_dispatch(&mut self, line: u64, depth: u32) -> Result<Option<Node>, EdnError> {
        self.bump();
        match self.peek() {
            Some(b'{') => {
                self.bump();
                let items = self.read_sequence(b'}', depth)?;
                Ok(Some(Node { line, value: Edn::Set(items) }))
            }
            Some(b'_') => {
                self.bump();
                // The discarded form must exist; reading it also checks it.
                // A discard of a discard (`#_ #_ a b`) discards two forms.
                while self.read_form(depth + 1)?.is_none() {}
                Ok(None)
            }
            Some(b'#') => {
                // `##Inf`, `##-Inf`, `##NaN`.
                self.bump();
                let name = self.token();
                Ok(Some(Node { line, value: Edn::Opaque(format!("##{name}")) }))
            }
            Some(byte) if !is_delimiter(byte) => {
                let tag = self.token().to_owned();
                let Some(inner) = self.read_tagged_form(depth)? else {
                    return Err(self.error(format!("tag #{tag} without a form")));
                };
                Ok(Some(Node { line, value: Edn::Tagged(tag, Box::new(inner)) }))
            }
            _ => Err(self.error("`#` must start a set, tag or discard")),
        }
    }

    /// Reads the form a tag applies to, skipping `#_` discards before it.
    fn read_tagged_form(&mut self, depth: u32) -> Result<Option<Node>, EdnError> {
        loop {
            self.skip_whitespace();
            if self.peek().is_none() {
                return Ok(None);
            }
            if let Some(node) = self.read_form(depth + 1)? {
                return Ok(Some(node));
            }
        }
    }

    fn read_string(&mut self) -> Result<String, EdnError> {
        let mut string = String::new();
        loop {
            let rest = self.text.get(self.position..).unwrap_or("");
            let Some(character) = rest.chars().next() else {
                return Err(self.error("unterminated string"));
            };
            self.position += character.len_utf8();
            match character {
                '"' => return Ok(string),
                '\n' => {
                    self.line += 1;
                    string.push('\n');
                }
                '\\' => {
                    let rest = self.text.get(self.position..).unwrap_or("");
                    let Some(escape) = rest.chars().next() else {
                        return Err(self.error("unterminated string"));
                    };
                    self.position += escape.len_utf8();
                    let unescaped = match escape {
                        '"' => '"',
                        '\\' => '\\',
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        'b' => '\u{8}',
                        'f' => '\u{c}',
                        'u' => self.read_unicode_escape()?,
                        other => {
                            let message = format!("unknown string escape `\\{}`", other.escape_debug());
                            return Err(self.error(message));
                        }
                    };
                    string.push(unescaped);
                }
                other => string.push(other),
            }
        }
    }

    fn read_unicode_escape(&mut self) -> Result<char, EdnError> {
        let digits = self.text.get(self.position..self.position + 4);
        let code = digits
            .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_hexdigit()))
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
            .ok_or_else(|| self.error("`\\u` must be followed by four hex digits"))?;
        self.position += 4;
        Ok(char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER))
    }
}

/// Classifies a token that is not a collection, string, keyword or dispatch.
fn atom(token: &str) -> Edn {
    match token {
        "nil" => return Edn::Nil,
        "true" => return Edn::Bool(true),
        "false" => return Edn::Bool(false),
        _ => {}
    }
    let bytes = token.as_bytes();
    let numeric = match bytes {
        [first, ..] if first.is_ascii_digit() => true,
        [b'+' | b'-', second, ..] => second.is_ascii_digit(),
        _ => false,
    };
    if !numeric {
        return Edn::Symbol(token.to_owned());
    }
    let digits = token.strip_suffix('N').unwrap_or(token);
    let digits = digits.strip_prefix('+').unwrap_or(digits);
    match digits.parse::<i64>() {
        Ok(integer) => Edn::Int(integer),
        Err(_) => Edn::Opaque(token.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<Edn> {
        read_all(text).expect("valid EDN").into_iter().map(|node| node.value).collect()
    }

    fn node(line: u64, value: Edn) -> Node {
        Node { line, value }
    }

    #[test]
    fn reads_the_supported_subset() {
        assert_eq!(
            values("nil true false 12 -3 +4 5N 1.5 99999999999999999999 foo/bar :ok \"a\\\"\\u0041\""),
            vec![
                Edn::Nil,
                Edn::Bool(true),
                Edn::Bool(false),
                Edn::Int(12),
                Edn::Int(-3),
                Edn::Int(4),
                Edn::Int(5),
                Edn::Opaque("1.5".into()),
                Edn::Opaque("99999999999999999999".into()),
                Edn::Symbol("foo/bar".into()),
                Edn::Keyword("ok".into()),
                Edn::String("a\"A".into()),
            ]
        );
        assert_eq!(
            read_all("; comment\n{:a [1, nil]\n :b #{} #_ (ignored) }").expect("valid"),
            vec![node(
                2,
                Edn::Map(vec![
                    (
                        node(2, Edn::Keyword("a".into())),
                        node(2, Edn::Vector(vec![node(2, Edn::Int(1)), node(2, Edn::Nil)]))
                    ),
                    (node(3, Edn::Keyword("b".into())), node(3, Edn::Set(vec![]))),
                ])
            )]
        );
        assert_eq!(
            values("#my.Rec{:x 1} \\a \\( ##Inf"),
            vec![
                Edn::Tagged(
                    "my.Rec".into(),
                    Box::new(node(1, Edn::Map(vec![(node(1, Edn::Keyword("x".into())), node(1, Edn::Int(1)))])))
                ),
                Edn::Opaque("\\a".into()),
                Edn::Opaque("\\(".into()),
                Edn::Opaque("##Inf".into()),
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error_with_its_line() {
        let cases: &[(&str, u64, &str)] = &[
            ("[1 2", 1, "unclosed collection opened on line 1"),
            ("\n\n)", 3, "unexpected `)`"),
            ("{:a}", 1, "map with an odd number of forms"),
            ("\"abc", 1, "unterminated string"),
            ("\"\\q\"", 1, "unknown string escape `\\q`"),
            ("\"\\u12\"", 1, "`\\u` must be followed by four hex digits"),
            (":", 1, "empty keyword"),
            ("#tag", 1, "tag #tag without a form"),
            ("# x", 1, "`#` must start a set, tag or discard"),
            ("#_", 1, "unexpected end of input"),
        ];
        for (text, line, message) in cases {
            let error = read_all(text).unwrap_err();
            assert_eq!(error, EdnError { line: *line, message: (*message).into() }, "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        let error = read_all(&deep).unwrap_err();
        assert_eq!(error.message, format!("nested deeper than {EDN_DEPTH_MAX}"));
        let deep_tags = "#a ".repeat(100_000);
        assert!(read_all(&deep_tags).is_err());
        let deep_discards = "#_ ".repeat(100_000);
        assert!(read_all(&deep_discards).is_err());
    }
}
