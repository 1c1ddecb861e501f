//! History formats: JSON Lines round trips, Jepsen EDN, and hostile input.

mod support;

use lockstep_jepsen::{check, CheckConfig, History, KeyOutcome, OpType, ParseErrorKind, Value, Verdict, F};
use proptest::prelude::*;

use support::{simulate, Choice};

/// A Jepsen register history with independent keys, a nemesis, a crashed
/// client (process 1 comes back as process 6) and the `:index` field, as
/// Jepsen writes it.
const JEPSEN_INDEPENDENT: &str = r#"{:type :invoke, :f :write, :value [0 3], :process 0, :time 1000, :index 0}
{:type :invoke, :f :cas, :value [0 [3 4]], :process 1, :time 1100, :index 1}
{:type :ok, :f :write, :value [0 3], :process 0, :time 1500, :index 2}
{:type :info, :f :start, :value nil, :process :nemesis, :time 1600, :index 3}
{:type :invoke, :f :read, :value [1 nil], :process 2, :time 1700, :index 4}
{:type :ok, :f :read, :value [1 nil], :process 2, :time 1800, :index 5}
{:type :info, :f :cas, :value [0 [3 4]], :process 1, :time 2000, :index 6, :error :timeout}
{:type :invoke, :f :read, :value [0 nil], :process 0, :time 2100, :index 7}
{:type :ok, :f :read, :value [0 4], :process 0, :time 2200, :index 8}
{:type :invoke, :f :cas, :value [1 [nil 9]], :process 6, :time 2300, :index 9}
{:type :fail, :f :cas, :value [1 [nil 9]], :process 6, :time 2400, :index 10, :error :mismatch}
{:type :invoke, :f :read, :value [1 nil], :process 2, :time 2500, :index 11}
{:type :ok, :f :read, :value [1 nil], :process 2, :time 2600, :index 12}
"#;

#[test]
fn jepsen_independent_history_parses_and_checks() {
    let history = History::parse_edn(JEPSEN_INDEPENDENT).expect("valid EDN history");
    assert_eq!(history.len(), 12, "the nemesis op is skipped");
    let first = &history.ops()[0];
    assert_eq!(
        (first.process, first.op_type, first.f, first.key.as_deref(), first.value, first.time_ns),
        (0, OpType::Invoke, F::Write, Some("0"), Value::Int(3), 1000)
    );
    let info = &history.ops()[5];
    assert_eq!((info.op_type, info.key.as_deref()), (OpType::Info, Some("0")));
    let result = check(&history, &CheckConfig::default());
    assert_eq!(result.verdict, Verdict::Valid, "{result}");
    let keys: Vec<(Option<&str>, u64)> = result.keys.iter().map(|key| (key.key.as_deref(), key.ops)).collect();
    assert_eq!(keys, vec![(Some("0"), 3), (Some("1"), 2)]);
    // The same history through JSON Lines gives the same verdict.
    let again = History::parse_jsonl(&history.to_jsonl()).expect("round trip");
    assert_eq!(check(&again, &CheckConfig::default()), result);
}

#[test]
fn jepsen_plain_register_history_in_a_vector_checks_invalid() {
    let text = "[{:process 0 :type :invoke :f :write :value 1}\n\
                 {:process 0 :type :ok :f :write :value 1}\n\
                 {:process 1 :type :invoke :f :cas :value [2 3]}\n\
                 {:process 1 :type :ok :f :cas :value [2 3]}]";
    let history = History::parse_edn(text).expect("valid");
    let result = check(&history, &CheckConfig::default());
    let [key] = result.keys.as_slice() else { panic!("one key: {result}") };
    let KeyOutcome::Invalid(counterexample) = &key.outcome else { panic!("invalid: {result}") };
    assert_eq!(counterexample.blocked.value, Value::Cas { expected: Some(2), new: 3 });
    assert_eq!(counterexample.prefix_value, Some(1));
}

proptest! {
    #[test]
    fn jsonl_round_trips(
        processes in 1_usize..6,
        keys in 1_usize..4,
        choices in prop::collection::vec(any::<Choice>(), 0..200),
    ) {
        let history = simulate(processes, keys, &choices);
        let text = history.to_jsonl();
        prop_assert_eq!(text.lines().count(), history.len());
        let parsed = History::parse_jsonl(&text).expect("own output parses");
        prop_assert_eq!(&parsed, &history);
        prop_assert_eq!(&parsed.to_jsonl(), &text);
        let from_reader = History::read_jsonl(text.as_bytes()).expect("own output reads");
        prop_assert_eq!(from_reader, history);
    }

    #[test]
    fn edn_round_trips(
        processes in 1_usize..6,
        keys in 1_usize..4,
        choices in prop::collection::vec(any::<Choice>(), 0..200),
    ) {
        let history = simulate(processes, keys, &choices);
        let text = history.to_edn();
        prop_assert_eq!(text.lines().count(), history.len());
        let parsed = History::parse_edn(&text).expect("own output parses");
        prop_assert_eq!(&parsed, &history);
        prop_assert_eq!(parsed.to_edn(), text);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        for history in [History::parse_jsonl(&text), History::parse_edn(&text)].into_iter().flatten() {
            let _ = check(&history, &CheckConfig::default()).to_string();
        }
        if let Err(error) = History::read_jsonl(bytes.as_slice()) {
            prop_assert!(error.line >= 1);
            let _ = error.to_string();
        }
    }

    #[test]
    fn random_edn_tokens_never_panic(tokens in prop::collection::vec(edn_token(), 0..80)) {
        let text = tokens.concat();
        match History::parse_edn(&text) {
            Ok(history) => {
                let _ = check(&history, &CheckConfig::default()).to_string();
            }
            Err(error) => {
                prop_assert!(error.line >= 1 && error.line <= text.lines().count() as u64 + 1);
                let _ = error.to_string();
            }
        }
    }

    #[test]
    fn random_json_tokens_never_panic(tokens in prop::collection::vec(json_token(), 0..60)) {
        let text = tokens.concat();
        match History::parse_jsonl(&text) {
            Ok(history) => {
                let _ = check(&history, &CheckConfig::default()).to_string();
            }
            Err(error) => {
                prop_assert!(error.line >= 1 && error.line <= text.lines().count() as u64 + 1);
                let _ = error.to_string();
            }
        }
    }
}

fn edn_token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        "(",
        ")",
        "#{",
        "#_",
        "#",
        "#tag",
        "##NaN",
        "\\a",
        "\"",
        "\"s\"",
        "\"\\u00e9\"",
        "\\",
        ":type",
        ":invoke",
        ":ok",
        ":fail",
        ":info",
        ":f",
        ":read",
        ":write",
        ":cas",
        ":value",
        ":process",
        ":time",
        ":nemesis",
        "nil",
        "true",
        "0",
        "1",
        "-1",
        "7N",
        "1.5",
        "99999999999999999999",
        "é",
        " ",
        ",",
        "\n",
        "; c\n",
        "{:process 0 :type :invoke :f :write :value 1}",
        "{:process 0 :type :ok :f :read :value 1}",
        "[0 [1 2]]",
        "[1 nil]",
    ])
}

fn json_token() -> impl Strategy<Value = &'static str> {
    prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        "\"",
        "\n",
        " ",
        "null",
        "0",
        "1",
        "-1",
        "1e400",
        "18446744073709551616",
        "\"process\"",
        "\"type\"",
        "\"f\"",
        "\"key\"",
        "\"value\"",
        "\"time\"",
        "\"invoke\"",
        "\"ok\"",
        "\"info\"",
        "\"fail\"",
        "\"read\"",
        "\"write\"",
        "\"cas\"",
        "\"k\"",
        "\\u0000",
        r#"{"process":0,"type":"invoke","f":"write","value":1,"time":0}"#,
        r#"{"process":0,"type":"ok","f":"read","value":2,"time":1}"#,
    ])
}

#[test]
fn non_utf8_jsonl_is_an_error_on_its_line() {
    let bytes: &[u8] = b"\n\xff\xfe\n";
    let error = History::read_jsonl(bytes).unwrap_err();
    assert_eq!(error.line, 2);
    assert!(matches!(error.kind, ParseErrorKind::Io(_)));
}
