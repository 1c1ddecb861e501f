//! Fuzzing the decoders of files from outside: snapshot files (`lockstep
//! snapshot restore`, `decode_snapshot_file`) and the config: the YAML file, `LOCKSTEP_*` environment
//! overrides and `--set` flags (`MemberConfig::load_text`, which
//! `MemberConfig::load` calls with the file's text). Random bytes, random
//! YAML (keys of the config and others, every scalar type, flow and block
//! collections, anchors and aliases, tags, deep nesting), valid configs with
//! values replaced and lines damaged, random env and flag overrides.
//! Properties: nothing panics or overflows the stack; a config either loads
//! (and then writes itself back to YAML that loads to the same config) or is
//! refused with problems that each say what is wrong and where (a file line
//! within the file, a variable, a flag, or a key).

use std::path::Path;

use lockstep::config::{ConfigError, MemberConfig, Origin, KEYS};
use lockstep::snapshot::{decode_snapshot_file, encode_snapshot_file, SnapshotHeader, SNAPSHOT_HEADER_LEN};
use lockstep_core::kv::{KvCommand, KvStore, LeaseGrantRequest, MemStorage, PutRequest};
use lockstep_core::StateMachine;
use proptest::prelude::*;

fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default);
    ProptestConfig { cases, ..ProptestConfig::default() }
}

const FILE: &str = "config.yaml";

const MINIMAL: &str = "\
member_id: 1
data_dir: /var/lib/lockstep
cluster:
  initial_members:
    - {id: 1, peer: \"127.0.0.1:2380\", client: \"http://127.0.0.1:2379\", admin: \"http://127.0.0.1:8080\"}
";

/// Loads and checks the properties; the outcome for further checks.
fn load(
    text: Option<&str>,
    env: &[(String, String)],
    flags: &[(String, String)],
) -> Result<Result<MemberConfig, ConfigError>, TestCaseError> {
    let result = MemberConfig::load_text(text.map(|t| (Path::new(FILE), t)), env, flags);
    match &result {
        Ok(config) => {
            // What loads writes itself back to a file that loads to it again.
            let yaml = config.to_yaml();
            let again = MemberConfig::load_text(Some((Path::new(FILE), &yaml)), &[], &[]);
            prop_assert!(again.as_ref().is_ok_and(|c| c == config), "to_yaml does not load back: {again:?}\n{yaml}");
        }
        Err(ConfigError::Read { .. }) => return Err(TestCaseError::fail("a read error without reading")),
        Err(ConfigError::Invalid(problems)) => {
            prop_assert!(!problems.is_empty(), "refused without a problem");
            let lines = text.map_or(0, |t| t.lines().count()) + 1;
            for problem in problems {
                prop_assert!(!problem.message.trim().is_empty(), "a problem without a message: {problem:?}");
                match &problem.origin {
                    Some(Origin::File { line, .. }) => {
                        prop_assert!(*line >= 1 && *line <= lines, "line {line} of {lines}: {problem}")
                    }
                    Some(Origin::Env { var }) => {
                        prop_assert!(env.iter().any(|(v, _)| v == var), "an unknown variable {var}: {problem}")
                    }
                    Some(Origin::Flag) => prop_assert!(problem.key.is_some(), "a flag problem without its key"),
                    Some(Origin::Default) | None => {
                        // A problem of the whole config names a key or the file.
                        prop_assert!(
                            problem.key.is_some() || problem.file.is_some() || text.is_none(),
                            "a problem that says not where: {problem:?}"
                        );
                    }
                }
                let shown = problem.to_string();
                prop_assert!(!shown.is_empty());
            }
        }
    }
    Ok(result)
}

// ---- inputs ----

fn key_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0..KEYS.len()).prop_map(|i| KEYS[i].path.rsplit('.').next().unwrap_or("").to_string()),
        2 => prop_oneof![Just("raft"), Just("tls"), Just("cluster"), Just("kv"), Just("wal"), Just("client"), Just("peer"),
            Just("initial_members"), Just("listen"), Just("advertise"), Just("log")].prop_map(str::to_string),
        1 => (0..KEYS.len()).prop_map(|i| KEYS[i].path.to_string()),
        1 => "[a-z_.]{1,12}",
        1 => "[ -~]{1,8}".prop_map(|k| format!("{k:?}")),
    ]
}

fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("~".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("no".to_string()),
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e400".to_string()),
        Just("0x1f".to_string()),
        Just(".inf".to_string()),
        Just("1.5GiB".to_string()),
        Just("127.0.0.1:2380".to_string()),
        Just("http://[::1]:2379".to_string()),
        Just("\"\"".to_string()),
        Just("!!binary aGVsbG8=".to_string()),
        Just("!custom x".to_string()),
        Just("|\n  block".to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[a-z0-9_./:-]{0,16}",
        "[ -~]{0,16}".prop_map(|s| format!("{s:?}")),
        "[ -~]{0,16}".prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
    ]
}

/// A YAML node as text, at `indent`.
#[derive(Debug, Clone)]
enum Yaml {
    Scalar(String),
    Map(Vec<(String, Yaml)>),
    Seq(Vec<Yaml>),
    FlowMap(Vec<(String, String)>),
    FlowSeq(Vec<String>),
    Anchor(String, Box<Yaml>),
    Alias(String),
}

fn yaml() -> impl Strategy<Value = Yaml> {
    let leaf = prop_oneof![
        4 => scalar().prop_map(Yaml::Scalar),
        1 => proptest::collection::vec((key_name(), scalar()), 0..4).prop_map(Yaml::FlowMap),
        1 => proptest::collection::vec(scalar(), 0..4).prop_map(Yaml::FlowSeq),
        1 => "[a-c]".prop_map(Yaml::Alias),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            3 => proptest::collection::vec((key_name(), inner.clone()), 0..6).prop_map(Yaml::Map),
            1 => proptest::collection::vec(inner.clone(), 0..4).prop_map(Yaml::Seq),
            1 => ("[a-c]", inner).prop_map(|(name, node)| Yaml::Anchor(name, Box::new(node))),
        ]
    })
}

fn render(node: &Yaml, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Yaml::Scalar(s) => {
            out.push(' ');
            out.push_str(&s.replace('\n', &format!("\n{pad}")));
            out.push('\n');
        }
        Yaml::FlowMap(entries) => {
            let items: Vec<String> = entries.iter().map(|(k, v)| format!("{k}: {v}")).collect();
            out.push_str(&format!(" {{{}}}\n", items.join(", ").replace('\n', " ")));
        }
        Yaml::FlowSeq(items) => out.push_str(&format!(" [{}]\n", items.join(", ").replace('\n', " "))),
        Yaml::Alias(name) => out.push_str(&format!(" *{name}\n")),
        Yaml::Anchor(name, inner) => {
            out.push_str(&format!(" &{name}"));
            render(inner, indent, out);
        }
        Yaml::Map(entries) => {
            out.push('\n');
            for (key, value) in entries {
                out.push_str(&format!("{pad}{key}:"));
                render(value, indent + 2, out);
            }
        }
        Yaml::Seq(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&format!("{pad}-"));
                render(item, indent + 2, out);
            }
        }
    }
}

fn document() -> impl Strategy<Value = String> {
    proptest::collection::vec((key_name(), yaml()), 0..8).prop_map(|entries| {
        let mut out = String::new();
        for (key, value) in entries {
            out.push_str(&format!("{key}:"));
            render(&value, 2, &mut out);
        }
        out
    })
}

/// A valid config (MINIMAL, or a complete one written by `to_yaml`) with
/// some lines replaced, duplicated, dropped or cut, or values changed.
fn damaged_valid() -> impl Strategy<Value = String> {
    let full = MemberConfig::load_text(Some((Path::new(FILE), MINIMAL)), &[], &[]).expect("MINIMAL loads").to_yaml();
    let base = prop_oneof![Just(MINIMAL.to_string()), Just(full)];
    let edit = prop_oneof![
        (any::<usize>(), scalar()).prop_map(|(at, value)| Edit::Value(at, value)),
        any::<usize>().prop_map(Edit::Duplicate),
        any::<usize>().prop_map(Edit::Drop),
        (any::<usize>(), any::<usize>()).prop_map(|(at, cut)| Edit::Cut(at, cut)),
        (any::<usize>(), key_name(), scalar()).prop_map(|(at, k, v)| Edit::Insert(at, format!("{k}: {v}"))),
        (any::<usize>(), 0usize..8).prop_map(|(at, n)| Edit::Indent(at, n)),
    ];
    (base, proptest::collection::vec(edit, 1..5)).prop_map(|(base, edits)| {
        let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
        for edit in edits {
            if lines.is_empty() {
                break;
            }
            let n = lines.len();
            match edit {
                Edit::Value(at, value) => {
                    let line = &mut lines[at % n];
                    if let Some((key, _)) = line.split_once(':') {
                        *line = format!("{key}: {value}").replace('\n', " ");
                    }
                }
                Edit::Duplicate(at) => {
                    let line = lines[at % n].clone();
                    lines.insert(at % n, line);
                }
                Edit::Drop(at) => {
                    lines.remove(at % n);
                }
                Edit::Cut(at, cut) => {
                    let line = &mut lines[at % n];
                    let mut end = cut % (line.len() + 1);
                    while !line.is_char_boundary(end) {
                        end -= 1;
                    }
                    line.truncate(end);
                }
                Edit::Insert(at, text) => lines.insert(at % (n + 1), text.replace('\n', " ")),
                Edit::Indent(at, by) => {
                    let line = &mut lines[at % n];
                    *line = format!("{}{line}", " ".repeat(by));
                }
            }
        }
        lines.join("\n") + "\n"
    })
}

#[derive(Debug, Clone)]
enum Edit {
    Value(usize, String),
    Duplicate(usize),
    Drop(usize),
    Cut(usize, usize),
    Insert(usize, String),
    Indent(usize, usize),
}

fn overrides() -> impl Strategy<Value = Vec<(String, String)>> {
    let pair = prop_oneof![
        4 => ((0..KEYS.len()).prop_map(|i| KEYS[i].path.to_string()), scalar()),
        1 => ("[a-z_.]{0,16}", scalar()),
    ];
    proptest::collection::vec(pair, 0..4)
}

fn env() -> impl Strategy<Value = Vec<(String, String)>> {
    overrides()
        .prop_map(|pairs| pairs.into_iter().map(|(key, value)| (lockstep::config::env_var_of(&key), value)).collect())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_text_is_refused_with_a_line_or_loads(text in any::<String>()) {
        let _ = load(Some(&text), &[], &[])?;
    }

    #[test]
    fn random_yaml_is_refused_with_a_line_or_loads(text in document(), with_minimal in any::<bool>()) {
        let text = if with_minimal { format!("{MINIMAL}{text}") } else { text };
        let _ = load(Some(&text), &[], &[])?;
    }

    #[test]
    fn damaged_valid_configs_are_refused_with_a_line_or_load(text in damaged_valid()) {
        let _ = load(Some(&text), &[], &[])?;
    }

    #[test]
    fn random_env_and_flags_are_refused_naming_them_or_load(
        env in env(),
        flags in overrides(),
        with_file in any::<bool>(),
    ) {
        let _ = load(with_file.then_some(MINIMAL), &env, &flags)?;
    }
}

/// Nesting far deeper than any config (a YAML bomb of brackets, or of
/// indentation) is refused with a line, without overflowing the stack.
#[test]
fn deeply_nested_yaml_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    let brackets = format!("member_id: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    let braces = format!("cluster: {}{}\n", "{a: ".repeat(depth), "}".repeat(depth));
    let mut indented = String::new();
    for level in 0..2_000 {
        indented.push_str(&format!("{}k{level}:\n", " ".repeat(level)));
    }
    for text in [brackets, braces, indented] {
        let result = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                MemberConfig::load_text(Some((Path::new(FILE), &text)), &[], &[]).map(|_| ()).map_err(|e| e.to_string())
            })
            .expect("a thread")
            .join()
            .expect("no stack overflow or panic");
        let error = result.expect_err("refused");
        assert!(error.starts_with("config.yaml:"), "{error}");
    }
}

/// Anchors and aliases are refused (a billion-laughs file cannot expand).
#[test]
fn aliases_are_refused_with_their_line() {
    let text = format!("{MINIMAL}raft: &a\n  pre_vote: true\nkv: *a\n");
    let error = MemberConfig::load_text(Some((Path::new(FILE), &text)), &[], &[]).unwrap_err().to_string();
    assert!(error.starts_with("config.yaml:"), "{error}");
}

// ---- snapshot files ----

/// The state of a small store (keys, a lease, a compaction) as snapshot data.
fn snapshot_data(keys: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut store = KvStore::open(Default::default(), MemStorage::new()).expect("opens");
    let mut index = 1;
    let grant = KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 60, id: 7 });
    let _ = store.execute(index, &grant);
    for (key, value) in keys {
        index += 1;
        let put = PutRequest { key: key.clone(), value: value.clone(), lease: 7, ..PutRequest::default() };
        let _ = store.execute(index, &KvCommand::Put(put));
    }
    StateMachine::snapshot(&store)
}

fn header(data: &[u8]) -> SnapshotHeader {
    SnapshotHeader {
        cluster_id: 0x1234,
        member_id: 1,
        applied_index: 9,
        revision: 4,
        data_len: data.len() as u64,
        data_crc: crc32c::crc32c(data),
    }
}

fn keys() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    proptest::collection::vec(
        (proptest::collection::vec(1u8..=255, 1..8), proptest::collection::vec(any::<u8>(), 0..16)),
        0..6,
    )
}

/// Decodes and checks: an error says something; a decoded file's data is
/// the data its header describes.
fn decode(bytes: &[u8]) -> Result<(), TestCaseError> {
    match decode_snapshot_file(bytes) {
        Ok((header, data)) => {
            prop_assert_eq!(header.data_len, data.len() as u64);
            prop_assert_eq!(header.data_crc, crc32c::crc32c(data));
        }
        Err(message) => prop_assert!(!message.trim().is_empty()),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn random_bytes_are_not_a_snapshot_file(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode(&bytes)?;
        let mut with_magic = b"LKSNAP01".to_vec();
        with_magic.extend_from_slice(&bytes);
        decode(&with_magic)?;
    }

    /// Damaged files (flipped, cut, extended, with a SHA-256 trailer as
    /// etcdctl saves them) never decode to something else silently.
    #[test]
    fn damaged_snapshot_files_are_refused_or_decode_to_their_data(
        keys in keys(),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..3),
        cut in prop::option::of(any::<usize>()),
        extra in proptest::collection::vec(any::<u8>(), 0..40),
        trailer in any::<bool>(),
    ) {
        let data = snapshot_data(&keys);
        let file = encode_snapshot_file(&header(&data), &data);
        let mut bytes = if trailer { lockstep_api::sha256::with_snapshot_checksum(file.clone()) } else { file.clone() };
        let damaged = !flips.is_empty() || cut.is_some() || !extra.is_empty();
        for (at, bits) in &flips {
            let i = at % bytes.len();
            bytes[i] ^= bits;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        bytes.extend_from_slice(&extra);
        decode(&bytes)?;
        if let Ok((_, decoded)) = decode_snapshot_file(&bytes) {
            // A damage that still decodes left the state as it was.
            prop_assert_eq!(decoded, data.as_slice(), "decoded other data (damaged: {})", damaged);
        } else {
            prop_assert!(damaged, "an undamaged file is refused");
        }
    }

    /// Random state data behind a valid header and checksums reaches the
    /// state decoder, which refuses it or restores it, never panics.
    #[test]
    fn random_state_behind_valid_checksums_is_refused_or_restored(
        keys in keys(),
        flips in proptest::collection::vec((any::<usize>(), 1u8..=255), 0..4),
        cut in prop::option::of(any::<usize>()),
        random in prop::option::weighted(0.3, proptest::collection::vec(any::<u8>(), 0..512)),
    ) {
        let mut data = random.unwrap_or_else(|| snapshot_data(&keys));
        for (at, bits) in &flips {
            if !data.is_empty() {
                let i = at % data.len();
                data[i] ^= bits;
            }
        }
        if let Some(cut) = cut {
            data.truncate(cut % (data.len() + 1));
        }
        let file = encode_snapshot_file(&header(&data), &data);
        prop_assert_eq!(file.len(), SNAPSHOT_HEADER_LEN + data.len());
        decode(&file)?;
    }
}
