//! The bank workload: money moves between accounts by multi-key `etcdctl
//! txn` transfers; every read of all accounts must show the same total and no
//! negative balance.
//!
//! - Accounts `lsj/bank/0` .. `lsj/bank/{ACCOUNTS-1}`, each starting at
//!   `BALANCE_INITIAL`, written by one txn before the workload starts.
//! - A read is one `get lsj/bank/ --prefix`: one Range at one revision, so it
//!   must see a state some sequence of whole transfers produced.
//! - A transfer reads every balance the same way, picks two accounts and an
//!   amount the source holds, and sends one txn: if both values are still
//!   what it read, put both new values. Any state that passes those compares
//!   gives the new values the same total, whatever happened in between.
//!   `SUCCESS` is `ok`, `FAILURE` (a compare did not hold) is `fail`, an
//!   error is `info` (the transfer may have happened).
//!
//! The history goes to `bank.jsonl`, one event per line:
//! `{"process":3,"type":"ok","f":"read","value":[100,97,103,100,100],"time":..}`,
//! `{"process":4,"type":"invoke","f":"transfer","value":{"from":1,"to":2,"amount":3},"time":..}`.
//! [`check`] checks every `ok` read.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value as Json};

use crate::client::{etcdctl, Outcome};
use crate::rng::Rng;

/// Number of accounts.
pub const ACCOUNTS: u64 = 5;
/// Each account's balance before the first transfer.
pub const BALANCE_INITIAL: i64 = 100;
/// The largest amount one transfer moves.
const AMOUNT_MAX: i64 = 5;
/// The common prefix of the account keys.
pub const PREFIX: &str = "lsj/bank/";

/// The etcd key of account `index`.
pub fn account_key(index: u64) -> String {
    format!("{PREFIX}{index}")
}

/// The sum every read must see.
pub fn total_expected() -> i64 {
    BALANCE_INITIAL * ACCOUNTS as i64
}

/// Balances by account index, as one read saw them (`None`: no such key).
pub type Balances = Vec<Option<i64>>;

/// Parses `etcdctl get PREFIX --prefix` output: key and value lines in turn.
pub fn parse_balances(stdout: &str) -> Result<Balances, String> {
    let mut balances = vec![None; ACCOUNTS as usize];
    let lines: Vec<&str> = stdout.lines().filter(|line| !line.trim().is_empty()).collect();
    if lines.len() % 2 != 0 {
        return Err(format!("odd number of lines in {stdout:?}"));
    }
    for pair in lines.chunks(2) {
        let index = pair[0]
            .trim()
            .strip_prefix(PREFIX)
            .and_then(|index| index.parse::<u64>().ok())
            .filter(|index| *index < ACCOUNTS)
            .ok_or_else(|| format!("unexpected key {:?}", pair[0]))?;
        let balance = pair[1].trim().parse::<i64>().map_err(|_| format!("unexpected balance {:?}", pair[1]))?;
        balances[index as usize] = Some(balance);
    }
    Ok(balances)
}

/// Reads every balance through `endpoint`: `Ok` with the balances, or `Fail`.
pub fn read(endpoint: &str) -> Result<Balances, String> {
    let args = vec!["get".to_owned(), PREFIX.to_owned(), "--prefix".to_owned()];
    match etcdctl(endpoint, &args, None)? {
        (true, stdout, _) => parse_balances(&stdout),
        (false, _, stderr) => Err(last_line(&stderr)),
    }
}

fn last_line(text: &str) -> String {
    text.trim().lines().last().unwrap_or("etcdctl failed with no message").chars().take(200).collect()
}

/// The txn stdin of a transfer from balances `(from, from_balance)` to
/// `(to, to_balance)` of `amount`.
pub fn transfer_txn(from: (u64, i64), to: (u64, i64), amount: i64) -> String {
    let (from_key, to_key) = (account_key(from.0), account_key(to.0));
    format!(
        "value(\"{from_key}\") = \"{}\"\nvalue(\"{to_key}\") = \"{}\"\n\nput {from_key} {}\nput {to_key} {}\n\n\n",
        from.1,
        to.1,
        from.1 - amount,
        to.1 + amount
    )
}

/// Writes the initial balances in one txn; `Err` when it did not succeed.
pub fn setup(endpoint: &str) -> Result<(), String> {
    let puts: String = (0..ACCOUNTS).map(|index| format!("put {} {BALANCE_INITIAL}\n", account_key(index))).collect();
    let stdin = format!("\n{puts}\n\n");
    match etcdctl(endpoint, &["txn".to_owned()], Some(&stdin))? {
        (true, stdout, _) if stdout.trim_start().starts_with("SUCCESS") => Ok(()),
        (_, stdout, stderr) => Err(format!("bank setup txn: {} {}", stdout.trim(), last_line(&stderr))),
    }
}

/// A transfer as planned: which accounts, how much.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// The account debited.
    pub from: u64,
    /// The account credited.
    pub to: u64,
    /// How much.
    pub amount: i64,
}

/// Picks a transfer the balances allow, if any account holds money.
pub fn plan_transfer(rng: &mut Rng, balances: &Balances) -> Option<Transfer> {
    let funded: Vec<u64> =
        (0..ACCOUNTS).filter(|index| balances[*index as usize].is_some_and(|balance| balance > 0)).collect();
    let from = *funded.get(rng.below(funded.len().max(1) as u64) as usize)?;
    let to = (from + 1 + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
    balances[to as usize]?;
    let held = balances[from as usize]?;
    let amount = 1 + rng.below(held.min(AMOUNT_MAX) as u64) as i64;
    Some(Transfer { from, to, amount })
}

/// Sends a planned transfer, given the balances it was planned from.
pub fn transfer(endpoint: &str, balances: &Balances, transfer: Transfer) -> Outcome {
    let (Some(from), Some(to)) = (balances[transfer.from as usize], balances[transfer.to as usize]) else {
        return Outcome::Fail("account missing".to_owned());
    };
    let stdin = transfer_txn((transfer.from, from), (transfer.to, to), transfer.amount);
    match etcdctl(endpoint, &["txn".to_owned()], Some(&stdin)) {
        // Nothing was sent.
        Err(error) => Outcome::Fail(error),
        Ok((true, stdout, _)) if stdout.trim_start().starts_with("SUCCESS") => Outcome::Ok(None),
        Ok((true, stdout, _)) if stdout.trim_start().starts_with("FAILURE") => {
            Outcome::Fail("compare failed".to_owned())
        }
        Ok((true, stdout, _)) => Outcome::Info(format!("unexpected etcdctl output {:?}", stdout.trim())),
        Ok((false, _, stderr)) => Outcome::Info(last_line(&stderr)),
    }
}

/// One event of the bank history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BankEvent {
    /// The client process.
    pub process: u64,
    /// `invoke`, `ok`, `fail` or `info`.
    pub op_type: String,
    /// `read` or `transfer`.
    pub f: String,
    /// Balances (a read's `ok`), a transfer, or null.
    pub value: Json,
    /// Nanoseconds since the workload started.
    pub time_ns: u64,
}

impl BankEvent {
    /// The event as one JSON Lines line, ending in `\n`.
    pub fn line(&self) -> String {
        let line = json!({
            "process": self.process, "type": self.op_type, "f": self.f, "value": self.value, "time": self.time_ns
        });
        format!("{line}\n")
    }
}

/// The transfer as a history value.
pub fn transfer_value(transfer: Transfer) -> Json {
    json!({"from": transfer.from, "to": transfer.to, "amount": transfer.amount})
}

/// `bank.jsonl`, written as it happens.
pub struct BankLog {
    start: Instant,
    inner: Mutex<(BufWriter<File>, Vec<BankEvent>)>,
}

impl BankLog {
    /// Creates `bank.jsonl` in `dir`.
    pub fn create(dir: &Path, start: Instant) -> std::io::Result<BankLog> {
        let file = BufWriter::new(File::create(dir.join("bank.jsonl"))?);
        Ok(BankLog { start, inner: Mutex::new((file, Vec::new())) })
    }

    /// Records one event.
    pub fn record(&self, process: u64, op_type: &str, f: &str, value: Json) {
        let mut inner = self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let time_ns = self.start.elapsed().as_nanos() as u64;
        let event = BankEvent { process, op_type: op_type.to_owned(), f: f.to_owned(), value, time_ns };
        let _ = inner.0.write_all(event.line().as_bytes());
        let _ = inner.0.flush();
        inner.1.push(event);
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<BankEvent> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner).1.clone()
    }
}

/// Runs one read as `process`, recording it; returns the balances read.
pub fn logged_read(log: &BankLog, process: u64, endpoint: &str) -> Option<Balances> {
    log.record(process, "invoke", "read", Json::Null);
    match read(endpoint) {
        Ok(balances) => {
            log.record(process, "ok", "read", json!(balances));
            Some(balances)
        }
        Err(error) => {
            log.record(process, "fail", "read", json!(error));
            None
        }
    }
}

/// One step of a client: a read, or a read followed by a transfer. Returns
/// whether the last operation completed `ok`. After an `info` the client
/// continues as `process + concurrency`.
pub fn step(log: &BankLog, rng: &mut Rng, process: &mut u64, concurrency: u64, endpoint: &str) -> bool {
    let Some(balances) = logged_read(log, *process, endpoint) else { return false };
    if rng.below(2) == 0 {
        return true;
    }
    let Some(planned) = plan_transfer(rng, &balances) else { return true };
    let value = transfer_value(planned);
    log.record(*process, "invoke", "transfer", value.clone());
    match transfer(endpoint, &balances, planned) {
        Outcome::Ok(_) => {
            log.record(*process, "ok", "transfer", value);
            true
        }
        Outcome::Fail(_) => {
            log.record(*process, "fail", "transfer", value);
            false
        }
        Outcome::Info(_) => {
            log.record(*process, "info", "transfer", value);
            *process += concurrency;
            false
        }
    }
}

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BankReport {
    /// `ok` reads checked.
    pub reads: u64,
    /// Transfers by outcome (`ok`, `fail`, `info`).
    pub transfers: BTreeMap<String, u64>,
    /// Reads that break an invariant, with why (the first 20).
    pub bad: Vec<String>,
    /// Reads that break an invariant, all of them.
    pub bad_count: u64,
}

impl BankReport {
    /// Whether every read held.
    pub fn valid(&self) -> bool {
        self.bad_count == 0
    }

    /// The report for people, several lines.
    pub fn text(&self) -> String {
        let transfers: Vec<String> = self.transfers.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        let mut text = format!(
            "bank: {} reads checked (every account present, total {}, no negative balance); transfers: {}\n",
            self.reads,
            total_expected(),
            if transfers.is_empty() { "none".to_owned() } else { transfers.join(", ") }
        );
        if self.valid() {
            text.push_str("bank: every read holds\n");
        } else {
            text.push_str(&format!("bank: {} reads break an invariant; the first:\n", self.bad_count));
            for bad in &self.bad {
                text.push_str(&format!("  {bad}\n"));
            }
        }
        text
    }
}

/// Checks every `ok` read: all accounts present, the expected total, no
/// negative balance.
pub fn check(events: &[BankEvent]) -> BankReport {
    let mut report = BankReport::default();
    for (index, event) in events.iter().enumerate() {
        if event.f == "transfer" && event.op_type != "invoke" {
            *report.transfers.entry(event.op_type.clone()).or_insert(0) += 1;
        }
        if event.f != "read" || event.op_type != "ok" {
            continue;
        }
        report.reads += 1;
        let balances: Option<Vec<Option<i64>>> = serde_json::from_value(event.value.clone()).ok();
        let problem = match balances {
            None => Some(format!("not a list of balances: {}", event.value)),
            Some(balances) if balances.len() != ACCOUNTS as usize || balances.iter().any(Option::is_none) => {
                Some(format!("accounts missing: {balances:?}"))
            }
            Some(balances) => {
                let balances: Vec<i64> = balances.into_iter().flatten().collect();
                let total: i64 = balances.iter().sum();
                if total != total_expected() {
                    Some(format!("total {total}, expected {}: {balances:?}", total_expected()))
                } else if balances.iter().any(|balance| *balance < 0) {
                    Some(format!("negative balance: {balances:?}"))
                } else {
                    None
                }
            }
        };
        if let Some(problem) = problem {
            report.bad_count += 1;
            if report.bad.len() < 20 {
                report.bad.push(format!(
                    "event {index}: process {} read at {:.3} s: {problem}",
                    event.process,
                    event.time_ns as f64 / 1e9
                ));
            }
        }
    }
    report
}

/// Parses `bank.jsonl`.
pub fn parse(text: &str) -> Result<Vec<BankEvent>, String> {
    let mut events = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let json: Json = serde_json::from_str(line).map_err(|error| format!("line {}: {error}", index + 1))?;
        let field = |name: &str| json.get(name).cloned().unwrap_or(Json::Null);
        let text_field = |name: &str| {
            field(name).as_str().map(str::to_owned).ok_or_else(|| format!("line {}: field `{name}`", index + 1))
        };
        if field("process").as_str() == Some("nemesis") {
            continue;
        }
        events.push(BankEvent {
            process: field("process").as_u64().ok_or_else(|| format!("line {}: field `process`", index + 1))?,
            op_type: text_field("type")?,
            f: text_field("f")?,
            value: field("value"),
            time_ns: field("time").as_u64().unwrap_or(0),
        });
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(process: u64, op_type: &str, f: &str, value: Json) -> BankEvent {
        BankEvent { process, op_type: op_type.to_owned(), f: f.to_owned(), value, time_ns: 0 }
    }

    #[test]
    fn balances_from_etcdctl_output() {
        let stdout = "lsj/bank/0\n100\nlsj/bank/1\n97\nlsj/bank/3\n103\n";
        assert_eq!(parse_balances(stdout), Ok(vec![Some(100), Some(97), None, Some(103), None]));
        assert!(parse_balances("lsj/bank/0\n").is_err());
        assert!(parse_balances("lsj/bank/9\n1\n").is_err());
        assert!(parse_balances("lsj/bank/0\nx\n").is_err());
        assert_eq!(parse_balances(""), Ok(vec![None; 5]));
    }

    #[test]
    fn transfer_txn_compares_both_values_and_conserves() {
        let text = transfer_txn((1, 97), (4, 100), 3);
        assert_eq!(
            text,
            "value(\"lsj/bank/1\") = \"97\"\nvalue(\"lsj/bank/4\") = \"100\"\n\nput lsj/bank/1 94\nput lsj/bank/4 103\n\n\n"
        );
    }

    #[test]
    fn planned_transfers_are_affordable_and_between_two_accounts() {
        let mut rng = Rng::new(3);
        let balances = vec![Some(0), Some(2), Some(0), Some(0), Some(0)];
        for _ in 0..100 {
            let planned = plan_transfer(&mut rng, &balances).expect("account 1 holds money");
            assert_eq!(planned.from, 1);
            assert_ne!(planned.to, 1);
            assert!((1..=2).contains(&planned.amount));
        }
        assert_eq!(plan_transfer(&mut rng, &vec![Some(0); 5]), None);
    }

    #[test]
    fn check_finds_wrong_totals_negatives_and_missing_accounts() {
        let events = vec![
            event(0, "invoke", "read", Json::Null),
            event(0, "ok", "read", json!([100, 100, 100, 100, 100])),
            event(1, "invoke", "transfer", json!({"from": 0, "to": 1, "amount": 3})),
            event(1, "ok", "transfer", json!({"from": 0, "to": 1, "amount": 3})),
            event(0, "ok", "read", json!([97, 103, 100, 100, 100])),
            event(2, "info", "transfer", json!({"from": 0, "to": 1, "amount": 3})),
            event(0, "fail", "read", json!("context deadline exceeded")),
        ];
        let report = check(&events);
        assert!(report.valid(), "{}", report.text());
        assert_eq!(report.reads, 2);
        assert_eq!(report.transfers, [("info".to_owned(), 1), ("ok".to_owned(), 1)].into_iter().collect());
        let bad = vec![
            event(0, "ok", "read", json!([97, 100, 100, 100, 100])),
            event(0, "ok", "read", json!([-1, 201, 100, 100, 100])),
            event(0, "ok", "read", json!([100, 100, null, 100, 100])),
            event(0, "ok", "read", json!("garbage")),
        ];
        let report = check(&bad);
        assert_eq!(report.bad_count, 4);
        assert!(report.bad[0].contains("total 497"), "{}", report.bad[0]);
        assert!(report.bad[1].contains("negative"), "{}", report.bad[1]);
        assert!(report.bad[2].contains("missing"), "{}", report.bad[2]);
        assert!(report.text().contains("4 reads break an invariant"));
    }

    #[test]
    fn lines_parse_back() {
        let events = vec![
            event(3, "ok", "read", json!([100, 97, 103, 100, 100])),
            event(4, "invoke", "transfer", json!({"from": 1, "to": 2, "amount": 3})),
        ];
        let text: String = events.iter().map(BankEvent::line).collect();
        let nemesis = "{\"process\":\"nemesis\",\"type\":\"info\",\"f\":\"kill\",\"value\":\"x\",\"time\":1}\n";
        assert_eq!(parse(&format!("{text}{nemesis}")), Ok(events));
        assert!(parse("{\"process\":1}").is_err());
    }
}
