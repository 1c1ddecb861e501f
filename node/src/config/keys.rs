//! The key registry: one table that names every config key with its type,
//! default, accepted values and meaning. It drives parsing and validation, the
//! environment variable names, [`MemberConfig::to_yaml`] and the key table of
//! `docs/config.md` (a unit test keeps the two equal).

use std::net::SocketAddr;
use std::path::PathBuf;

use super::yaml::{self, Node};
use super::{InitialMember, LogFormat, MemberConfig};

/// The prefix of every environment variable that sets a key.
pub const ENV_PREFIX: &str = "LOCKSTEP_";

/// `LOCKSTEP_*` variables that are not config keys and that [`MemberConfig::load`]
/// therefore leaves alone instead of calling them unknown.
///
/// - `LOCKSTEP_CONFIG`: the config file of a member started without `--config`
///   (read by the command line, not by [`MemberConfig::load`]).
/// - `LOCKSTEP_GIT_COMMIT`: the commit a build records (read at build time only).
pub const ENV_NOT_KEYS: &[&str] = &["LOCKSTEP_CONFIG", "LOCKSTEP_GIT_COMMIT"];

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
const TIB: u64 = 1 << 40;

/// What a key holds, and so how its text is parsed and what is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A whole number in `min..=max`.
    Int {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A number of bytes in `min..=max`, plain (`1048576`) or with a binary unit
    /// (`1MiB`, `1.5 MiB`, `64KiB`, `8GiB`, `1TiB`).
    Size {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// A power of two in `min..=max`, a number of bytes.
    PowerOfTwo {
        /// Smallest accepted.
        min: u64,
        /// Largest accepted.
        max: u64,
    },
    /// `true` or `false`.
    Bool,
    /// A non-empty string.
    Text,
    /// A non-empty file system path.
    Path,
    /// A file system path; optional (empty or `null` = not set).
    OptPath,
    /// A socket address to bind: `IP:PORT`.
    ListenAddr,
    /// An address others dial, `HOST:PORT`; optional (empty or `null` = not set).
    HostPort,
    /// `http://HOST:PORT` or `https://HOST:PORT`; optional (empty or `null` = not set).
    Url,
    /// The initial members: a list of `{id, peer, client, admin}`.
    Members,
    /// A log level or a `tracing` filter directive.
    LogLevel,
    /// `human` or `json`.
    LogFormat,
}

/// What the docs and `to_yaml` say a key's default is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultValue {
    /// No default: the key must be set.
    Required,
    /// The value of [`MemberConfig`]'s built-in defaults, rendered.
    Value,
    /// A rule instead of a value, as Markdown (for example "`http://<listen.client>`").
    Derived(&'static str),
}

/// A mutable reference to the field a key sets.
pub(crate) enum FieldMut<'a> {
    U64(&'a mut u64),
    Bool(&'a mut bool),
    Str(&'a mut String),
    OptStr(&'a mut Option<String>),
    Path(&'a mut PathBuf),
    OptPath(&'a mut Option<PathBuf>),
    Addr(&'a mut SocketAddr),
    Members(&'a mut Vec<InitialMember>),
    LogFormat(&'a mut LogFormat),
}

/// A parsed value, ready to be stored in its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    U64(u64),
    Bool(bool),
    Str(String),
    OptStr(Option<String>),
    Path(PathBuf),
    OptPath(Option<PathBuf>),
    Addr(SocketAddr),
    Members(Vec<InitialMember>),
    LogFormat(LogFormat),
}

/// One config key.
pub struct KeySpec {
    /// The dotted path (`raft.heartbeat_interval_ms`); in YAML, one level of
    /// nesting per dot.
    pub path: &'static str,
    /// Type and accepted range.
    pub kind: Kind,
    /// The default.
    pub default: DefaultValue,
    /// A relation to other keys that the value must also satisfy, for the docs
    /// and for range errors ("at least 2 × raft.heartbeat_interval_ms").
    pub relation: Option<&'static str>,
    /// What the key means, one or two sentences.
    pub meaning: &'static str,
    pub(crate) field: for<'a> fn(&'a mut MemberConfig) -> FieldMut<'a>,
}

impl KeySpec {
    /// The environment variable that sets this key: [`ENV_PREFIX`] followed by the
    /// path in upper case with each `.` replaced by `_`
    /// (`raft.heartbeat_interval_ms` → `LOCKSTEP_RAFT_HEARTBEAT_INTERVAL_MS`).
    pub fn env_var(&self) -> String {
        env_var_of(self.path)
    }

    /// The accepted values, in words ("between 10 and 10000").
    pub fn accepted(&self) -> String {
        accepted_with(self.kind, self.relation)
    }

    /// The default as the docs write it.
    pub fn default_text(&self) -> String {
        match self.default {
            DefaultValue::Required => "required".into(),
            DefaultValue::Derived(rule) => rule.into(),
            DefaultValue::Value => {
                let mut defaults = MemberConfig::unset();
                render_plain(&read(&mut defaults, self))
            }
        }
    }
}

/// The environment variable name for a dotted key path.
pub fn env_var_of(path: &str) -> String {
    format!("{ENV_PREFIX}{}", path.to_ascii_uppercase().replace('.', "_"))
}

/// The key with this dotted path.
pub fn find(path: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.path == path)
}

/// The key set by this environment variable.
pub fn find_env(var: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|k| k.env_var() == var)
}

/// True if `path` names a section (a mapping of keys), like `raft`.
pub(crate) fn is_section(path: &str) -> bool {
    KEYS.iter().any(|k| k.path.len() > path.len() && k.path.starts_with(path) && k.path.as_bytes()[path.len()] == b'.')
}

/// Reads a key's current value out of a config.
pub(crate) fn read(config: &mut MemberConfig, spec: &KeySpec) -> Value {
    match (spec.field)(config) {
        FieldMut::U64(v) => Value::U64(*v),
        FieldMut::Bool(v) => Value::Bool(*v),
        FieldMut::Str(v) => Value::Str(v.clone()),
        FieldMut::OptStr(v) => Value::OptStr(v.clone()),
        FieldMut::Path(v) => Value::Path(v.clone()),
        FieldMut::OptPath(v) => Value::OptPath(v.clone()),
        FieldMut::Addr(v) => Value::Addr(*v),
        FieldMut::Members(v) => Value::Members(v.clone()),
        FieldMut::LogFormat(v) => Value::LogFormat(*v),
    }
}

/// Stores a parsed value in its field.
///
/// # Panics
/// If the key's kind parses to a value of another type than its field: a bug in
/// the registry, which the unit tests exercise for every key.
pub(crate) fn write(config: &mut MemberConfig, spec: &KeySpec, value: Value) {
    match ((spec.field)(config), value) {
        (FieldMut::U64(f), Value::U64(v)) => *f = v,
        (FieldMut::Bool(f), Value::Bool(v)) => *f = v,
        (FieldMut::Str(f), Value::Str(v)) => *f = v,
        (FieldMut::OptStr(f), Value::OptStr(v)) => *f = v,
        (FieldMut::Path(f), Value::Path(v)) => *f = v,
        (FieldMut::OptPath(f), Value::OptPath(v)) => *f = v,
        (FieldMut::Addr(f), Value::Addr(v)) => *f = v,
        (FieldMut::Members(f), Value::Members(v)) => *f = v,
        (FieldMut::LogFormat(f), Value::LogFormat(v)) => *f = v,
        (_, value) => panic!("config key {} cannot hold {value:?}: the key registry is inconsistent", spec.path),
    }
}

/// A value as one line of plain text (what the docs show, and what error messages
/// quote for defaults).
pub(crate) fn render_plain(value: &Value) -> String {
    match value {
        Value::U64(v) => v.to_string(),
        Value::Bool(v) => v.to_string(),
        Value::Str(v) => v.clone(),
        Value::OptStr(v) => v.clone().unwrap_or_else(|| "not set".into()),
        Value::Path(v) => v.display().to_string(),
        Value::OptPath(v) => v.as_ref().map_or_else(|| "not set".into(), |p| p.display().to_string()),
        Value::Addr(v) => v.to_string(),
        Value::Members(v) if v.is_empty() => "[]".into(),
        Value::Members(v) => {
            let items: Vec<String> = v
                .iter()
                .map(|m| format!("{{id: {}, peer: {}, client: {}, admin: {}}}", m.id, m.peer, m.client, m.admin))
                .collect();
            format!("[{}]", items.join(", "))
        }
        Value::LogFormat(v) => v.name().into(),
    }
}

/// A problem with one value, relative to the key: `path` is empty for the key
/// itself or names a part of it (`[1].peer`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bad {
    /// 1-based line in the text the value came from.
    pub line: usize,
    /// The part of the value the problem is about, appended to the key.
    pub path: String,
    /// The offending text, if there is one.
    pub value: Option<String>,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl Bad {
    fn at(node: &Node, value: Option<String>, message: String) -> Bad {
        Bad { line: node.line(), path: String::new(), value, message }
    }
}

/// Parses a node (from the file, or an env var or flag wrapped as a scalar) by kind.
pub(crate) fn parse(kind: Kind, relation: Option<&str>, node: &Node) -> Result<Value, Vec<Bad>> {
    if kind == Kind::Members {
        return parse_members(node);
    }
    let optional = matches!(kind, Kind::HostPort | Kind::Url | Kind::OptPath);
    let text = match node {
        Node::Scalar { text, .. } => text,
        Node::Seq { .. } => {
            return Err(vec![Bad::at(node, None, format!("a list, but must be {}", accepted_with(kind, relation)))]);
        }
        Node::Map { .. } => {
            return Err(vec![Bad::at(node, None, format!("a mapping, but must be {}", accepted_with(kind, relation)))]);
        }
    };
    if node.is_null() || (optional && text.is_empty()) {
        return if kind == Kind::OptPath {
            Ok(Value::OptPath(None))
        } else if optional {
            Ok(Value::OptStr(None))
        } else {
            Err(vec![Bad::at(node, None, format!("no value; must be {}", accepted_with(kind, relation)))])
        };
    }
    parse_text(kind, relation, text).map_err(|message| vec![Bad::at(node, Some(text.clone()), message)])
}

/// Parses the text of a scalar by kind; the error says what is accepted.
fn parse_text(kind: Kind, relation: Option<&str>, text: &str) -> Result<Value, String> {
    let must = || format!("must be {}", accepted_with(kind, relation));
    match kind {
        Kind::Int { min, max } => {
            let v = parse_u64(text).ok_or_else(|| format!("not an integer; {}", must()))?;
            if v < min || v > max {
                return Err(must());
            }
            Ok(Value::U64(v))
        }
        Kind::Size { min, max } => {
            let v = parse_size(text).map_err(|e| format!("{e}; {}", must()))?;
            if v < min || v > max {
                return Err(must());
            }
            Ok(Value::U64(v))
        }
        Kind::PowerOfTwo { min, max } => {
            let v = parse_size(text).map_err(|e| format!("{e}; {}", must()))?;
            if v < min || v > max || !v.is_power_of_two() {
                return Err(must());
            }
            Ok(Value::U64(v))
        }
        Kind::Bool => match text {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(must()),
        },
        Kind::Text => {
            if text.trim().is_empty() {
                return Err(must());
            }
            Ok(Value::Str(text.to_string()))
        }
        Kind::Path => {
            if text.trim().is_empty() {
                return Err(must());
            }
            Ok(Value::Path(PathBuf::from(text)))
        }
        Kind::OptPath => Ok(Value::OptPath(Some(PathBuf::from(text)))),
        Kind::ListenAddr => text.parse::<SocketAddr>().map(Value::Addr).map_err(|_| must()),
        Kind::HostPort => check_host_port(text).map(|()| Value::OptStr(Some(text.to_string()))).map_err(|_| must()),
        Kind::Url => check_url(text).map(|()| Value::OptStr(Some(text.to_string()))).map_err(|_| must()),
        Kind::LogLevel => check_log_filter(text).map(|()| Value::Str(text.to_string())).map_err(|_| must()),
        Kind::LogFormat => match text {
            "human" => Ok(Value::LogFormat(LogFormat::Human)),
            "json" => Ok(Value::LogFormat(LogFormat::Json)),
            _ => Err(must()),
        },
        // Handled by `parse`.
        Kind::Members => Err(must()),
    }
}

/// The accepted values of a kind and a relation to other keys, in words.
fn accepted_with(kind: Kind, relation: Option<&str>) -> String {
    match relation {
        Some(relation) => format!("{}, and {relation}", accepted(kind)),
        None => accepted(kind),
    }
}

/// The accepted values of a kind, in words.
pub(crate) fn accepted(kind: Kind) -> String {
    match kind {
        Kind::Int { min, max } if max == u64::MAX => format!("an integer of at least {min}"),
        Kind::Int { min, max } => format!("between {min} and {max}"),
        Kind::Size { min, max } => format!(
            "between {} and {} (bytes, or a number with a unit: KiB, MiB, GiB, TiB)",
            human_size(min),
            human_size(max)
        ),
        Kind::PowerOfTwo { min, max } => format!("a power of two between {min} and {max}"),
        Kind::Bool => "true or false".into(),
        Kind::Text => "a non-empty string".into(),
        Kind::Path => "a non-empty path".into(),
        Kind::OptPath => "a path to a file; empty or null: not set".into(),
        Kind::ListenAddr => "IP:PORT, like 127.0.0.1:2379 or [::]:2379".into(),
        Kind::HostPort => "HOST:PORT, like 10.0.0.1:2380 or node1.example.com:2380".into(),
        Kind::Url => "a URL http://HOST:PORT or https://HOST:PORT".into(),
        Kind::Members => "a list of members, each {id, peer: HOST:PORT, client: URL, admin: URL}".into(),
        Kind::LogLevel => {
            "off, error, warn, info, debug, trace, or a filter like info,lockstep_core::raft=debug".into()
        }
        Kind::LogFormat => "human or json".into(),
    }
}

/// A decimal integer of ASCII digits (no sign, no spaces, no `_`).
pub(crate) fn parse_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A byte count: `1048576`, `1MiB`, `1 MiB`, `1.5MiB` (which must come to whole bytes).
pub(crate) fn parse_size(text: &str) -> Result<u64, &'static str> {
    const NOT_A_SIZE: &str = "not a size";
    let number_end = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let unit = match unit.trim_start() {
        "" | "B" => 1,
        "KiB" => KIB,
        "MiB" => MIB,
        "GiB" => GIB,
        "TiB" => TIB,
        _ => return Err(NOT_A_SIZE),
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() || (number.contains('.') && fraction.is_empty()) || fraction.len() > 6 {
        return Err(NOT_A_SIZE);
    }
    let whole = parse_u64(whole).ok_or(NOT_A_SIZE)?;
    let mut total = u128::from(whole) * u128::from(unit);
    if !fraction.is_empty() {
        let digits = parse_u64(fraction).ok_or(NOT_A_SIZE)?;
        let scale = 10u128.pow(fraction.len() as u32);
        let part = u128::from(digits) * u128::from(unit);
        if part % scale != 0 {
            return Err("not a whole number of bytes");
        }
        total += part / scale;
    }
    u64::try_from(total).map_err(|_| "too large")
}

/// A byte count in the largest binary unit that writes it with at most one
/// decimal (`1.5MiB`, `64MiB`, `4096` stays `4KiB`), or plain bytes.
pub fn human_size(bytes: u64) -> String {
    for (unit, name) in [(TIB, "TiB"), (GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")] {
        if bytes >= unit && (u128::from(bytes) * 10) % u128::from(unit) == 0 {
            let tenths = u128::from(bytes) * 10 / u128::from(unit);
            return if tenths % 10 == 0 {
                format!("{}{name}", tenths / 10)
            } else {
                format!("{}.{}{name}", tenths / 10, tenths % 10)
            };
        }
    }
    bytes.to_string()
}

/// `HOST:PORT`: a host name or IPv4 address, or `[IPv6]`, then a port 1..=65535.
pub(crate) fn check_host_port(text: &str) -> Result<(), ()> {
    let (host, port) = text.rsplit_once(':').ok_or(())?;
    let port: u16 = parse_u64(port).and_then(|p| u16::try_from(p).ok()).ok_or(())?;
    if port == 0 {
        return Err(());
    }
    if let Some(inner) = host.strip_prefix('[') {
        let inner = inner.strip_suffix(']').ok_or(())?;
        return inner.parse::<std::net::Ipv6Addr>().map(|_| ()).map_err(|_| ());
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
        && !host.starts_with(['.', '-'])
        && !host.ends_with('-');
    if host_ok {
        Ok(())
    } else {
        Err(())
    }
}

/// `http://HOST:PORT` or `https://HOST:PORT`, with an optional trailing `/`.
pub(crate) fn check_url(text: &str) -> Result<(), ()> {
    let rest = text.strip_prefix("http://").or_else(|| text.strip_prefix("https://")).ok_or(())?;
    check_host_port(rest.strip_suffix('/').unwrap_or(rest))
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// A `tracing` `EnvFilter`-style directive list: comma-separated items, each a
/// level (the default for every target) or `target=level`, where a target is a
/// module path (`lockstep_core::raft`) optionally followed by a span filter
/// (`[span{field}]`). A bare target, which `EnvFilter` would read as "everything
/// from that target", is refused: it is almost always a misspelt level.
pub(crate) fn check_log_filter(text: &str) -> Result<(), ()> {
    let is_level = |s: &str| LEVELS.iter().any(|l| l.eq_ignore_ascii_case(s));
    let is_target = |s: &str| {
        let (target, span) = s.split_once('[').unwrap_or((s, ""));
        !target.is_empty()
            && target.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':' || b == b'-')
            && (span.is_empty() || span.ends_with(']'))
    };
    let ok = text.split(',').all(|item| match item.split_once('=') {
        Some((target, level)) => is_target(target) && is_level(level),
        None => is_level(item),
    });
    if ok {
        Ok(())
    } else {
        Err(())
    }
}

/// The fields of one initial member, in the order the docs and `to_yaml` write them.
const MEMBER_FIELDS: [&str; 4] = ["id", "peer", "client", "admin"];

fn parse_members(node: &Node) -> Result<Value, Vec<Bad>> {
    let items = match node {
        _ if node.is_null() => return Ok(Value::Members(Vec::new())),
        Node::Seq { items, .. } => items,
        Node::Scalar { text, .. } => {
            return Err(vec![Bad::at(node, Some(text.clone()), format!("must be {}", accepted(Kind::Members)))]);
        }
        Node::Map { .. } => {
            return Err(vec![Bad::at(node, None, format!("a mapping, but must be {}", accepted(Kind::Members)))]);
        }
    };
    let mut bad = Vec::new();
    let mut members: Vec<InitialMember> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Node::Map { entries, .. } = item else {
            bad.push(Bad {
                line: item.line(),
                path: format!("[{i}]"),
                value: None,
                message: "must be a mapping {id, peer, client, admin}".into(),
            });
            continue;
        };
        let mut member = InitialMember { id: 0, peer: String::new(), client: String::new(), admin: String::new() };
        let mut seen = [false; 4];
        let mut item_ok = true;
        for entry in entries {
            let Some(field) = MEMBER_FIELDS.iter().position(|f| *f == entry.key) else {
                let hint = super::suggest::suggest(&entry.key, MEMBER_FIELDS.iter().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                bad.push(Bad {
                    line: entry.key_line,
                    path: format!("[{i}]"),
                    value: None,
                    message: format!("unknown key `{}`{hint}; a member has id, peer, client and admin", entry.key),
                });
                item_ok = false;
                continue;
            };
            seen[field] = true;
            // A key written without a value is reported on its own line.
            let value = match &entry.value {
                node if node.is_null() => Node::Scalar { text: String::new(), plain: true, line: entry.key_line },
                node => node.clone(),
            };
            let kind = match field {
                0 => Kind::Int { min: 1, max: i64::MAX as u64 },
                1 => Kind::HostPort,
                _ => Kind::Url,
            };
            let parsed = match &value {
                node if node.is_null() => {
                    Err(vec![Bad::at(node, None, format!("no value; must be {}", accepted(kind)))])
                }
                node => parse(kind, None, node),
            };
            match parsed {
                Ok(Value::U64(id)) => member.id = id,
                Ok(Value::OptStr(Some(text))) => match field {
                    1 => member.peer = text,
                    2 => member.client = text,
                    _ => member.admin = text,
                },
                Ok(Value::OptStr(None)) => {
                    item_ok = false;
                    bad.push(Bad {
                        line: value.line(),
                        path: format!("[{i}].{}", entry.key),
                        value: None,
                        message: format!("no value; must be {}", accepted(kind)),
                    });
                }
                Ok(_) => {}
                Err(problems) => {
                    item_ok = false;
                    bad.extend(
                        problems.into_iter().map(|b| Bad { path: format!("[{i}].{}{}", entry.key, b.path), ..b }),
                    );
                }
            }
        }
        let missing: Vec<&str> = MEMBER_FIELDS.iter().zip(seen).filter(|(_, s)| !s).map(|(f, _)| *f).collect();
        if !missing.is_empty() {
            bad.push(Bad {
                line: item.line(),
                path: format!("[{i}]"),
                value: None,
                message: format!("missing {}; a member has id, peer, client and admin", quoted_list(&missing)),
            });
            item_ok = false;
        }
        if !item_ok {
            continue;
        }
        for (earlier_index, earlier) in members.iter().enumerate() {
            let clash = if earlier.id == member.id {
                Some(("id", member.id.to_string(), format!("member {} is listed twice", member.id)))
            } else if earlier.peer == member.peer {
                Some(("peer", member.peer.clone(), format!("also the peer address of member {}", earlier.id)))
            } else {
                None
            };
            if let Some((field, value, what)) = clash {
                let line = entries.iter().find(|e| e.key == field).map_or(item.line(), |e| e.key_line);
                bad.push(Bad {
                    line,
                    path: format!("[{i}].{field}"),
                    value: Some(value),
                    message: format!("{what} (also at [{earlier_index}])"),
                });
                item_ok = false;
                break;
            }
        }
        if item_ok {
            members.push(member);
        }
    }
    if bad.is_empty() {
        Ok(Value::Members(members))
    } else {
        Err(bad)
    }
}

/// `a`, `a` and `b`, `a`, `b` and `c`, each in backticks.
fn quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => quoted.join(""),
    }
}

/// Parses the text of an environment variable or flag as the key's kind: the
/// text itself for scalars, a YAML flow list for [`Kind::Members`].
pub(crate) fn parse_override(kind: Kind, relation: Option<&str>, text: &str) -> Result<Value, Vec<Bad>> {
    if kind != Kind::Members {
        // Not YAML: `LOCKSTEP_NAME=null` is the name "null", and an empty value
        // unsets an optional key.
        return parse(kind, relation, &Node::Scalar { text: text.to_string(), plain: false, line: 0 });
    }
    match yaml::parse(text) {
        Ok(Some(node)) => parse(kind, relation, &node),
        Ok(None) => Ok(Value::Members(Vec::new())),
        Err(e) => Err(vec![Bad {
            line: e.line,
            path: String::new(),
            value: None,
            message: format!("{}; must be {}", e.message, accepted(kind)),
        }]),
    }
}

macro_rules! key {
    ($path:literal, $kind:expr, $default:expr, $relation:expr, $field:ident ( $($access:tt)+ ), $meaning:literal) => {
        KeySpec {
            path: $path,
            kind: $kind,
            default: $default,
            relation: $relation,
            meaning: $meaning,
            field: |c: &mut MemberConfig| FieldMut::$field(&mut c.$($access)+),
        }
    };
}

const fn int(min: u64, max: u64) -> Kind {
    Kind::Int { min, max }
}

const fn size(min: u64, max: u64) -> Kind {
    Kind::Size { min, max }
}

/// Every config key, in the order of the docs and of `to_yaml`.
pub static KEYS: &[KeySpec] = &[
    key!("name", Kind::Text, DefaultValue::Derived("`member-<member_id>`"), None, Str(name),
        "A human-readable name for this member, shown in member lists, logs and metrics."),
    key!("member_id", int(1, i64::MAX as u64), DefaultValue::Required, None, U64(member_id),
        "This member's id, unique in the cluster and never reused. Must match the id in the data directory's identity file once it has one."),
    key!("data_dir", Kind::Path, DefaultValue::Required, None, Path(data_dir),
        "The member's data directory (identity file, WAL, snapshots, key-value data). Created on first start."),
    key!("auth_token", Kind::Text, DefaultValue::Value, None, Str(auth_token),
        "The tokens Authenticate issues, as etcd's --auth-token: simple (random, kept in each member's memory) or jwt,pub-key=FILE,priv-key=FILE,sign-method=RS256|ES256|HS256|...[,ttl=5m] (signed; HMAC methods use the priv-key file as the secret). See docs/security.md."),
    key!("auth_token_ttl", int(1, 86_400 * 365), DefaultValue::Value, None, U64(auth_token_ttl),
        "Seconds a simple token stays valid after its last use (etcd's --auth-token-ttl)."),
    key!("bcrypt_cost", int(4, 31), DefaultValue::Value, None, U64(bcrypt_cost),
        "The bcrypt cost of password hashes made by user add and user passwd (etcd's --bcrypt-cost). Each step doubles the time one hash or password check takes."),
    key!("cluster.token", Kind::Text, DefaultValue::Value, None, Str(cluster.token),
        "A name for the cluster, mixed into the cluster id so that members of two clusters with the same member list refuse to talk to each other."),
    key!("cluster.initial_members", Kind::Members, DefaultValue::Value, None, Members(cluster.initial_members),
        "The members that bootstrap a new cluster, this member among them; the same list on every one of them. Used only when the data directory is empty and cluster.join is not set."),
    key!("cluster.join", Kind::Url, DefaultValue::Value, None, OptStr(cluster.join),
        "Join a running cluster through this admin URL of one of its members (the member is added as a learner, then promoted), instead of bootstrapping. Used only when the data directory is empty."),
    key!("listen.client", Kind::ListenAddr, DefaultValue::Value, None, Addr(listen.client),
        "Address to serve clients on (etcd v3 gRPC and JSON gateway)."),
    key!("listen.peer", Kind::ListenAddr, DefaultValue::Value, None, Addr(listen.peer),
        "Address to serve other members on (Raft traffic)."),
    key!("listen.admin", Kind::ListenAddr, DefaultValue::Value, None, Addr(listen.admin),
        "Address to serve the HTTP admin endpoints on (/health, /livez, /readyz, /metrics, members)."),
    key!("advertise.client", Kind::Url, DefaultValue::Derived("`http://<listen.client>`"), None, OptStr(advertise.client),
        "The client URL this member tells clients and other members. Required when listen.client binds every address (0.0.0.0 or [::])."),
    key!("advertise.peer", Kind::HostPort, DefaultValue::Derived("`<listen.peer>`"), None, OptStr(advertise.peer),
        "The peer address other members dial to reach this one. Required when listen.peer binds every address."),
    key!("advertise.admin", Kind::Url, DefaultValue::Derived("`http://<listen.admin>`"), None, OptStr(advertise.admin),
        "The admin URL this member tells others (members joining through it, tools). Required when listen.admin binds every address."),
    key!("raft.heartbeat_interval_ms", int(10, 10_000), DefaultValue::Value, None, U64(raft.heartbeat_interval_ms),
        "How often a leader sends heartbeats, in milliseconds. Roughly the round-trip time between members, or more."),
    key!("raft.election_timeout_ms", int(20, 60_000), DefaultValue::Value, Some("at least 2 × raft.heartbeat_interval_ms"),
        U64(raft.election_timeout_ms),
        "A follower that hears no leader for this long (randomised up to twice this) starts an election, in milliseconds. About 10 × the heartbeat interval."),
    key!("raft.pre_vote", Kind::Bool, DefaultValue::Value, None, Bool(raft.pre_vote),
        "Run a pre-vote round before starting an election, so that a member that was partitioned away does not disrupt the cluster when it returns."),
    key!("raft.check_quorum", Kind::Bool, DefaultValue::Value, None, Bool(raft.check_quorum),
        "A leader that has not heard from a quorum for an election timeout steps down."),
    key!("raft.lease_reads", Kind::Bool, DefaultValue::Value, None, Bool(raft.lease_reads),
        "Serve linearizable reads from the leader's lease instead of confirming leadership with a heartbeat round. Faster, but correct only while clocks run at about the same rate."),
    key!("raft.snapshot_threshold_entries", int(1, u64::MAX), DefaultValue::Value, None, U64(raft.snapshot_threshold_entries),
        "Take a snapshot once this many log entries were applied since the last one."),
    key!("raft.compaction_lag_entries", int(0, 1_000_000_000), DefaultValue::Value, None, U64(raft.compaction_lag_entries),
        "Log entries kept behind a snapshot, so that a follower that is a little behind catches up from the log instead of a snapshot."),
    key!("raft.max_inflight_msgs", int(1, 4096), DefaultValue::Value, None, U64(raft.max_inflight_msgs),
        "Append messages in flight to one follower before the leader waits for acknowledgements."),
    key!("raft.max_append_bytes", size(KIB, 64 * MIB), DefaultValue::Value, Some("at most transport.max_frame_bytes − kv.max_request_bytes"),
        U64(raft.max_append_bytes),
        "Bytes of log entries in one append message (at least one entry is always sent)."),
    key!("raft.request_timeout_ms", int(100, 600_000), DefaultValue::Value, None, U64(raft.request_timeout_ms),
        "A client request that is not committed and applied within this time fails with a timeout, in milliseconds."),
    key!("raft.max_pending_requests", int(1, 1_000_000), DefaultValue::Value, None, U64(raft.max_pending_requests),
        "Client requests waiting for commit or for a read index; more are refused as overloaded."),
    key!("kv.max_txn_ops", int(1, 100_000), DefaultValue::Value, None, U64(kv.max_txn_ops),
        "Operations in one transaction branch, and compares per transaction (etcd's --max-txn-ops)."),
    key!("kv.max_request_bytes", size(KIB, 64 * MIB), DefaultValue::Value, None, U64(kv.max_request_bytes),
        "Bytes of one client request (etcd's --max-request-bytes)."),
    key!("kv.quota_backend_bytes", size(0, TIB), DefaultValue::Value, None, U64(kv.quota_backend_bytes),
        "Bytes the stored revisions may take before writes fail with NOSPACE until compaction and defragmentation (etcd's --quota-backend-bytes). 0 means the default, 8 GiB, as in etcd."),
    key!("kv.lease_ttl_min_s", int(1, 3600), DefaultValue::Derived("1.5 × `raft.election_timeout_ms` in seconds, rounded up (`2`)"),
        Some("at least 1.5 × raft.election_timeout_ms (in seconds, rounded up)"),
        U64(kv.lease_ttl_min_s),
        "Lease TTLs below this many seconds are raised to it, so that a lease outlives a leader election."),
    key!("wal.segment_size_bytes", size(MIB, GIB), DefaultValue::Value, None, U64(wal.segment_size_bytes),
        "The write-ahead log is written in segment files of about this size."),
    key!("wal.preallocate", Kind::Bool, DefaultValue::Value, None, Bool(wal.preallocate),
        "Reserve each new WAL segment's full size on disk when it is created (fewer file system metadata updates per fsync)."),
    key!("wal.block_size", Kind::PowerOfTwo { min: 512, max: 65_536 }, DefaultValue::Value, None, U64(wal.block_size),
        "Every WAL sync ends on a multiple of this many bytes, so synced blocks are never rewritten. At least the disk's physical block size. New segments only; existing ones keep theirs."),
    key!("transport.max_frame_bytes", size(64 * KIB, GIB), DefaultValue::Value, Some("at least raft.max_append_bytes + kv.max_request_bytes"),
        U64(transport.max_frame_bytes),
        "The largest message frame accepted from another member; larger frames close the connection."),
    key!("transport.peer_queue_messages", int(1, 1_000_000), DefaultValue::Value, None, U64(transport.peer_queue_messages),
        "Messages queued for one peer while its connection is slow or down; more are dropped (Raft resends)."),
    key!("transport.reconnect_backoff_min_ms", int(1, 60_000), DefaultValue::Value, None, U64(transport.reconnect_backoff_min_ms),
        "The first wait before reconnecting to a peer, in milliseconds; it doubles on each failure."),
    key!("transport.reconnect_backoff_max_ms", int(1, 600_000), DefaultValue::Value, Some("at least transport.reconnect_backoff_min_ms"),
        U64(transport.reconnect_backoff_max_ms),
        "The longest wait between reconnection attempts, in milliseconds."),
    key!("transport.dial_timeout_ms", int(10, 60_000), DefaultValue::Value, None, U64(transport.dial_timeout_ms),
        "Give up on one connection attempt to a peer after this long, in milliseconds."),
    key!("grpc.max_concurrent_streams", int(1, u32::MAX as u64), DefaultValue::Value, None, U64(grpc.max_concurrent_streams),
        "Concurrent gRPC streams (requests and watches) per client connection."),
    key!("grpc.keepalive_interval_ms", int(1000, 86_400_000), DefaultValue::Value, None, U64(grpc.keepalive_interval_ms),
        "Ping a client connection that has been idle this long, in milliseconds (etcd's --grpc-keepalive-interval, 2 h)."),
    key!("grpc.keepalive_timeout_ms", int(1000, 600_000), DefaultValue::Value, None, U64(grpc.keepalive_timeout_ms),
        "Close a client connection whose keepalive ping is not answered within this time, in milliseconds (etcd's --grpc-keepalive-timeout)."),
    key!("tls.client.cert_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.client.cert_file),
        "The certificate chain (PEM, leaf first) the client port presents; set with tls.client.key_file to serve etcd's gRPC API and the JSON gateway over TLS (https://). Reloaded when it changes."),
    key!("tls.client.key_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.client.key_file),
        "The private key (PEM) of tls.client.cert_file. Keep it readable by the member only (mode 0600)."),
    key!("tls.client.ca_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.client.ca_file),
        "The CA bundle (PEM) that client certificates must chain to; needed for tls.client.client_cert_auth."),
    key!("tls.client.client_cert_auth", Kind::Bool, DefaultValue::Value, None, Bool(tls.client.client_cert_auth),
        "Refuse clients that do not present a certificate signed by tls.client.ca_file (mutual TLS, etcd's --client-cert-auth)."),
    key!("tls.peer.cert_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.peer.cert_file),
        "The member certificate (PEM) for the peer port, presented both when accepting and when dialing other members, so it needs the serverAuth and clientAuth key usages. Setting it turns on mutual TLS between members: every member must then use peer TLS."),
    key!("tls.peer.key_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.peer.key_file),
        "The private key (PEM) of tls.peer.cert_file."),
    key!("tls.peer.ca_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.peer.ca_file),
        "The cluster CA bundle (PEM): members whose certificates do not chain to it are refused. Required with tls.peer.cert_file."),
    key!("tls.admin.cert_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.admin.cert_file),
        "The certificate (PEM) of the admin port (health, metrics, membership); set with tls.admin.key_file to serve it over https://. Members also present it when they call each other's admin port, so it needs the serverAuth and clientAuth key usages."),
    key!("tls.admin.key_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.admin.key_file),
        "The private key (PEM) of tls.admin.cert_file."),
    key!("tls.admin.ca_file", Kind::OptPath, DefaultValue::Value, None, OptPath(tls.admin.ca_file),
        "The CA bundle (PEM) the admin port verifies client certificates with, and that other members' admin certificates must chain to. Required with tls.admin.cert_file."),
    key!("tls.admin.client_cert_auth", Kind::Bool, DefaultValue::Value, None, Bool(tls.admin.client_cert_auth),
        "Refuse admin clients (tools, other members) that do not present a certificate signed by tls.admin.ca_file."),
    key!("tls.reload_interval_ms", int(100, 3_600_000), DefaultValue::Value, None, U64(tls.reload_interval_ms),
        "How often the certificate, key and CA files are checked for changes, in milliseconds; changed files are reloaded without dropping connections. SIGHUP reloads at once."),
    key!("limits.global_qps", int(0, 100_000_000), DefaultValue::Value, None, U64(limits.global_qps),
        "Client requests per second this member serves, all clients together (a token bucket; each unary call, JSON gateway request or stream opened takes one token). More are refused with RESOURCE_EXHAUSTED. 0: no limit. Changeable at runtime: PUT /admin/limits."),
    key!("limits.global_burst", int(0, 100_000_000), DefaultValue::Value, None, U64(limits.global_burst),
        "Requests the global bucket holds: how many may arrive at once after a quiet spell. 0: equal to limits.global_qps."),
    key!("limits.user_qps", int(0, 100_000_000), DefaultValue::Value, None, U64(limits.user_qps),
        "Requests per second of each authenticated user on this member; another user's requests are not affected. Per-user overrides: PUT /admin/limits. 0: no limit."),
    key!("limits.user_burst", int(0, 100_000_000), DefaultValue::Value, None, U64(limits.user_burst),
        "Requests each user's bucket holds. 0: equal to limits.user_qps."),
    key!("limits.max_key_bytes", size(0, 64 * MIB), DefaultValue::Value, None, U64(limits.max_key_bytes),
        "Bytes of a key a put (also inside a transaction) may write. 0: no limit besides kv.max_request_bytes."),
    key!("limits.max_value_bytes", size(0, 64 * MIB), DefaultValue::Value, None, U64(limits.max_value_bytes),
        "Bytes of a value a put (also inside a transaction) may write. 0: no limit besides kv.max_request_bytes."),
    key!("limits.max_watches_per_stream", int(0, u32::MAX as u64), DefaultValue::Value, None, U64(limits.max_watches_per_stream),
        "Watchers one Watch stream may hold; a create beyond is canceled in band with the limit as its reason. With grpc.max_concurrent_streams this bounds the watchers of a connection. 0: no limit."),
    key!("limits.max_connections_per_source", int(0, u32::MAX as u64), DefaultValue::Value, None, U64(limits.max_connections_per_source),
        "Client connections open at once from one IP address; more are closed as soon as they are accepted. 0: no limit."),
    key!("limits.max_leases", int(0, u32::MAX as u64), DefaultValue::Value, None, U64(limits.max_leases),
        "Leases in the cluster: LeaseGrant is refused with RESOURCE_EXHAUSTED while this many exist (as this member knows them). 0: no limit."),
    key!("limits.auth_failures_max", int(0, 1_000_000), DefaultValue::Value, None, U64(limits.auth_failures_max),
        "Failed Authenticate calls, per user name and per source address, within limits.auth_failure_window_ms that lock further attempts out. 0: no lock-out."),
    key!("limits.auth_failure_window_ms", int(1, 86_400_000), DefaultValue::Value, None, U64(limits.auth_failure_window_ms),
        "The window failed Authenticate calls are counted in, in milliseconds."),
    key!("limits.auth_lockout_ms", int(1, 86_400_000), DefaultValue::Value, None, U64(limits.auth_lockout_ms),
        "The first lock-out after too many failed Authenticate calls, in milliseconds; each further one doubles it."),
    key!("limits.auth_lockout_max_ms", int(1, 86_400_000), DefaultValue::Value, Some("at least limits.auth_lockout_ms"),
        U64(limits.auth_lockout_max_ms),
        "The longest lock-out, in milliseconds."),
    key!("log.level", Kind::LogLevel, DefaultValue::Value, None, Str(log.level),
        "What to log: a level, or a filter with levels per module like info,lockstep_core::raft=debug."),
    key!("log.format", Kind::LogFormat, DefaultValue::Value, None, LogFormat(log.format),
        "Log lines as text for a person (human) or one JSON object per line (json)."),
    key!("audit.file", Kind::OptPath, DefaultValue::Value, None, OptPath(audit.file),
        "Append the audit log here: one JSON object per line for every auth change, login, refused request, membership change and certificate reload (docs/security.md, Audit log). Off when not set. Keep it readable by the member only; it is created with mode 0600."),
    key!("encryption.key_file", Kind::OptPath, DefaultValue::Value, None, OptPath(encryption.key_file),
        "Encrypt the WAL and snapshot files with AES-256-GCM under the key in this file (32 bytes, raw or 64 hex digits; lockstep encryption init-key writes one), and keep the key-value state in memory only. Off when not set. Data written with a key needs the same key to start, fsck or restore (docs/security.md, Encryption at rest)."),
];
