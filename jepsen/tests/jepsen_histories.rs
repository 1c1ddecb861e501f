//! Jepsen's own etcd histories (`testdata/porcupine-etcd/`, from Porcupine's
//! test data): `lockstep-jepsen check --model cas-register` gives each the
//! verdict Porcupine's test suite asserts, on the original Jepsen log and on
//! its conversions to JSON Lines and Jepsen EDN, with the right last line and
//! exit code. The conversions committed under `converted/` are what
//! `lockstep-jepsen convert` writes today.

use std::path::{Path, PathBuf};
use std::process::Command;

use lockstep_jepsen::{check, CheckConfig, History, Verdict};

const HARNESS: &str = env!("CARGO_BIN_EXE_lockstep-jepsen");

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/porcupine-etcd")
}

/// `(file name, expected last line)` for every history, from `verdicts.txt`.
fn expected_verdicts() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(data_dir().join("verdicts.txt")).expect("verdicts.txt");
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let (file, verdict) = line.split_once(' ').expect("`FILE VERDICT`");
            assert!(matches!(verdict, "linearizable" | "not linearizable"), "{line}");
            (file.to_owned(), verdict.to_owned())
        })
        .collect()
}

fn exit_code_of(verdict: &str) -> i32 {
    match verdict {
        "linearizable" => 0,
        "not linearizable" => 1,
        other => panic!("unexpected verdict {other:?}"),
    }
}

/// Runs `check --model cas-register FILE`; returns its last line and exit code.
fn run_check(file: &Path) -> (String, i32) {
    let output = Command::new(HARNESS)
        .args(["check", "--model", "cas-register"])
        .arg(file)
        .output()
        .expect("run lockstep-jepsen check");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or("").to_owned();
    (last, output.status.code().expect("exit code"))
}

/// Runs `convert --to FORMAT FILE -o OUT`; asserts it succeeds.
fn run_convert(file: &Path, format: &str, out: &Path) {
    let output = Command::new(HARNESS)
        .args(["convert", "--to", format])
        .arg(file)
        .arg("-o")
        .arg(out)
        .output()
        .expect("run lockstep-jepsen convert");
    assert!(output.status.success(), "convert {} failed: {}", file.display(), String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_vendored_set_is_complete_and_has_both_verdicts() {
    let verdicts = expected_verdicts();
    assert_eq!(verdicts.len(), 102, "etcd_000 to etcd_102 without the empty etcd_095");
    let valid = verdicts.iter().filter(|(_, verdict)| verdict == "linearizable").count();
    assert_eq!((valid, verdicts.len() - valid), (23, 79));
    for (file, _) in &verdicts {
        assert!(data_dir().join(file).is_file(), "{file} is listed but not vendored");
    }
}

#[test]
fn check_gives_porcupines_verdict_on_every_original_and_both_conversions() {
    let scratch = std::env::temp_dir().join(format!("lsj-jepsen-histories-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).expect("scratch directory");
    let mut wrong = Vec::new();
    for (file, expected) in expected_verdicts() {
        let original = data_dir().join(&file);
        let stem = file.trim_end_matches(".log");
        let jsonl = scratch.join(format!("{stem}.jsonl"));
        let edn = scratch.join(format!("{stem}.edn"));
        run_convert(&original, "jsonl", &jsonl);
        run_convert(&original, "edn", &edn);
        for path in [&original, &jsonl, &edn] {
            let (last, code) = run_check(path);
            if last != expected || code != exit_code_of(&expected) {
                wrong.push(format!("{}: {last:?} exit {code}, expected {expected:?}", path.display()));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&scratch);
    assert!(wrong.is_empty(), "{} wrong verdicts:\n{}", wrong.len(), wrong.join("\n"));
}

#[test]
fn committed_conversions_are_current_and_check_right() {
    let verdicts = expected_verdicts();
    let converted = data_dir().join("converted");
    let mut seen = 0;
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(&converted).expect("converted/").map(|entry| entry.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().and_then(|name| name.to_str()).expect("name").to_owned();
        let Some((stem, extension)) = name.rsplit_once('.') else { continue };
        let original = data_dir().join(format!("{stem}.log"));
        let history =
            History::parse_jepsen_log(&std::fs::read_to_string(&original).expect("original")).expect("original parses");
        let expected_text = match extension {
            "jsonl" => history.to_jsonl(),
            "edn" => history.to_edn(),
            _ => continue,
        };
        let text = std::fs::read_to_string(&path).expect("converted file");
        assert_eq!(text, expected_text, "{name} is not what `convert` writes now");
        let (_, expected) = verdicts.iter().find(|(file, _)| *file == format!("{stem}.log")).expect("listed");
        assert_eq!(run_check(&path), (expected.clone(), exit_code_of(expected)), "{name}");
        seen += 1;
    }
    assert_eq!(seen, 24, "12 histories, each as JSON Lines and EDN");
}

#[test]
fn conversions_read_back_to_the_same_history_and_verdict() {
    for (file, expected) in expected_verdicts() {
        let text = std::fs::read_to_string(data_dir().join(&file)).expect("original");
        let history = History::parse_jepsen_log(&text).expect("original parses");
        assert_eq!(History::parse_jsonl(&history.to_jsonl()).expect("jsonl"), history, "{file}");
        assert_eq!(History::parse_edn(&history.to_edn()).expect("edn"), history, "{file}");
        let verdict = check(&history, &CheckConfig::default()).verdict;
        let wanted = if expected == "linearizable" { Verdict::Valid } else { Verdict::Invalid };
        assert_eq!(verdict, wanted, "{file}");
    }
}

#[test]
fn the_committed_broken_build_history_checks_not_linearizable() {
    let history = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/jepsen/broken-follower-reads/history.jsonl");
    assert_eq!(run_check(&history), ("not linearizable".to_owned(), 1));
}

#[test]
fn check_model_bank_on_a_recorded_bank_history_and_a_corrupted_copy() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/bank");
    let check_bank = |name: &str| {
        let output = Command::new(HARNESS)
            .args(["check", "--model", "bank"])
            .arg(dir.join(name))
            .output()
            .expect("run lockstep-jepsen check");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        (stdout.lines().last().unwrap_or("").to_owned(), output.status.code().expect("exit code"), stdout)
    };
    let (last, code, _) = check_bank("valid.jsonl");
    assert_eq!((last.as_str(), code), ("valid", 0));
    // The same first 60 lines of a bank run with one read's first balance raised by 1.
    let (last, code, stdout) = check_bank("invalid-total.jsonl");
    assert_eq!((last.as_str(), code), ("invalid", 1), "{stdout}");
    assert!(stdout.contains("total 501, expected 500: [101, 100, 100, 100, 100]"), "{stdout}");
}
