//! The workloads, over etcd's v3 gRPC API through the `etcd-client` crate.
//!
//! Like etcd's `benchmark` tool, `--conns` connections (one `etcd_client::Client`
//! each, one HTTP/2 channel to one endpoint, endpoints taken round-robin) are
//! shared round-robin by `--clients` concurrent workers. Each worker sends one
//! request at a time and records its latency; the run ends when `--total`
//! requests have been sent or `--duration` has passed, and every request sent
//! is either recorded as a latency or counted as an error.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, ConnectOptions, GetOptions, Txn, TxnOp, WatchOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::args::{BenchArgs, Consistency, LeaseArgs, WatchArgs, Workload};
use crate::report::Report;
use crate::stats::Recorder;

/// A watch benchmark's values start with a run nonce and the put's sequence
/// number (16 hex digits each), so they are at least this long.
pub const WATCH_VALUE_BYTES_MIN: u64 = 32;
/// How long connecting to an endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Hands out request numbers until `total` is reached or the deadline passes.
#[derive(Debug)]
pub struct Plan {
    total: u64,
    deadline: Option<Instant>,
    issued: AtomicU64,
    /// Answers received (successes and errors), for the progress bar.
    pub answered: AtomicU64,
}

impl Plan {
    /// A plan of `total` requests, ending early at `deadline`.
    pub fn new(total: u64, deadline: Option<Instant>) -> Plan {
        Plan { total, deadline, issued: AtomicU64::new(0), answered: AtomicU64::new(0) }
    }

    /// The number of the next request to send, or `None` when the run is over.
    pub fn next(&self) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        (n < self.total).then_some(n)
    }
}

/// The key of number `n` (below the key space): its decimal digits, zero-padded
/// on the left to `size` bytes, so keys are readable with etcdctl.
pub fn key_of(n: u64, size: u64) -> Vec<u8> {
    format!("{n:0width$}", width = size as usize).into_bytes()
}

/// A value of `size` printable bytes, the same for every request (as etcd's
/// benchmark uses one random value), derived from `seed`.
pub fn value_of(size: u64, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..size).map(|_| rng.random_range(b'a'..=b'z')).collect()
}

/// The short description an error is counted under.
pub fn error_kind(error: &etcd_client::Error) -> String {
    match error {
        etcd_client::Error::GRpcStatus(status) => format!("{:?}: {}", status.code(), status.message()),
        other => other.to_string(),
    }
}

/// Runs the workload of `args` (not `table` or `plot`) and returns its report.
pub fn run(args: &BenchArgs) -> Result<Report, String> {
    let mut builder = match args.threads {
        1 => tokio::runtime::Builder::new_current_thread(),
        0 => tokio::runtime::Builder::new_multi_thread(),
        n => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder.worker_threads(n);
            builder
        }
    };
    let runtime = builder.enable_all().build().map_err(|e| format!("cannot start the client runtime: {e}"))?;
    runtime.block_on(run_async(args))
}

async fn connect(args: &BenchArgs) -> Result<Vec<Client>, String> {
    let options = ConnectOptions::new().with_timeout(args.request_timeout).with_connect_timeout(CONNECT_TIMEOUT);
    let mut clients = Vec::new();
    for index in 0..args.conns {
        let endpoint = args.endpoint_of_conn(index);
        let client = Client::connect([endpoint.as_str()], Some(options.clone()))
            .await
            .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
        clients.push(client);
    }
    Ok(clients)
}

fn progress_bar(len: u64, unit: &str) -> ProgressBar {
    use std::io::IsTerminal;
    let target =
        if std::io::stderr().is_terminal() { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() };
    let bar = ProgressBar::with_draw_target(Some(len), target);
    let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} ({{per_sec}}, eta {{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Moves `bar` along with `counter` until `stop` is set.
fn spawn_progress(bar: ProgressBar, counter: Arc<Plan>, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            bar.set_position(counter.answered.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bar.finish_and_clear();
    })
}

fn base_report(args: &BenchArgs, unit: &str) -> Report {
    Report {
        workload: args.workload.name().to_string(),
        name: args.name.clone(),
        label: args.label.clone(),
        endpoints: args.endpoint_urls(),
        clients: args.clients,
        conns: args.conns,
        total: args.total,
        duration_limit_s: args.duration.map(|d| d.as_secs_f64()),
        key_size: args.key_size,
        val_size: args.val_size,
        key_space: args.key_space,
        params: serde_json::Map::new(),
        unit: unit.to_string(),
        summary: Recorder::new().summary(Duration::ZERO),
    }
}

async fn run_async(args: &BenchArgs) -> Result<Report, String> {
    let conns = connect(args).await?;
    match &args.workload {
        Workload::Put | Workload::Range(_) | Workload::TxnPut(_) => run_requests(args, &conns).await,
        Workload::Watch(w) => run_watch(args, w, &conns).await,
        Workload::LeaseKeepalive(l) => run_lease(args, l, &conns).await,
        Workload::Table(_) | Workload::Plot(_) => Err("table and plot send no load".into()),
    }
}

/// One request of a unary workload.
#[derive(Clone)]
enum Request {
    Put,
    Range { key: Vec<u8>, serializable: bool },
    TxnPut { ops: u64 },
}

/// put, range and txn-put: `--clients` workers, each one request at a time.
async fn run_requests(args: &BenchArgs, conns: &[Client]) -> Result<Report, String> {
    let value = Arc::new(value_of(args.val_size, args.seed));
    let mut report = base_report(args, "requests");
    let request = match &args.workload {
        Workload::Range(r) => {
            // The key exists, with a value of --val-size, so every read returns it.
            let key = r.key.clone().into_bytes();
            conns[0]
                .kv_client()
                .put(key.clone(), value.as_slice(), None)
                .await
                .map_err(|e| format!("cannot write the key to range over: {}", error_kind(&e)))?;
            let consistency = if r.consistency == Consistency::S { "s" } else { "l" };
            report.params.insert("consistency".into(), consistency.into());
            report.params.insert("key".into(), r.key.clone().into());
            Request::Range { key, serializable: r.consistency == Consistency::S }
        }
        Workload::TxnPut(t) => {
            report.params.insert("txn_ops".into(), t.txn_ops.into());
            Request::TxnPut { ops: t.txn_ops }
        }
        _ => Request::Put,
    };
    let plan = Arc::new(Plan::new(args.total, args.duration.map(|d| Instant::now() + d)));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = spawn_progress(progress_bar(args.total, "requests"), plan.clone(), stop.clone());
    let started = Instant::now();
    let mut workers = Vec::new();
    for index in 0..args.clients {
        let mut kv = conns[(index % conns.len() as u64) as usize].kv_client();
        let (plan, value, request) = (plan.clone(), value.clone(), request.clone());
        let (key_size, key_space, sequential) = (args.key_size, args.key_space, args.sequential_keys);
        let mut rng = SmallRng::seed_from_u64(args.seed.wrapping_mul(1_000_003).wrapping_add(index));
        workers.push(tokio::spawn(async move {
            let mut recorder = Recorder::new();
            while let Some(n) = plan.next() {
                let sent = Instant::now();
                let result = match &request {
                    Request::Put => {
                        let k = if sequential { n % key_space } else { rng.random_range(0..key_space) };
                        let key = key_of(k, key_size);
                        kv.put(key, value.as_slice(), None).await.map(|_| ())
                    }
                    Request::Range { key, serializable } => {
                        let options = if *serializable { Some(GetOptions::new().with_serializable()) } else { None };
                        kv.get(key.as_slice(), options).await.map(|_| ())
                    }
                    Request::TxnPut { ops } => {
                        let first = rng.random_range(0..key_space);
                        let puts: Vec<TxnOp> = (0..*ops)
                            .map(|i| TxnOp::put(key_of((first + i) % key_space, key_size), value.as_slice(), None))
                            .collect();
                        kv.txn(Txn::new().and_then(puts)).await.map(|_| ())
                    }
                };
                match result {
                    Ok(()) => recorder.record_ok(sent.elapsed()),
                    Err(e) => recorder.record_error(&error_kind(&e)),
                }
                plan.answered.fetch_add(1, Ordering::Relaxed);
            }
            recorder
        }));
    }
    let mut recorder = Recorder::new();
    for worker in workers {
        match worker.await {
            Ok(r) => recorder.merge(&r),
            Err(e) => recorder.record_error(&format!("worker failed: {e}")),
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    report.summary = recorder.summary(elapsed);
    Ok(report)
}

/// lease-keepalive: each worker grants a lease, opens one keep-alive stream and
/// renews the lease on it, one renewal at a time; the lease is revoked at the end.
async fn run_lease(args: &BenchArgs, lease: &LeaseArgs, conns: &[Client]) -> Result<Report, String> {
    let mut report = base_report(args, "requests");
    report.params.insert("ttl_s".into(), lease.ttl_s.into());
    let plan = Arc::new(Plan::new(args.total, args.duration.map(|d| Instant::now() + d)));
    let stop = Arc::new(AtomicBool::new(false));
    let progress = spawn_progress(progress_bar(args.total, "keep-alives"), plan.clone(), stop.clone());
    let started = Instant::now();
    let mut workers = Vec::new();
    for index in 0..args.clients {
        let mut client = conns[(index % conns.len() as u64) as usize].lease_client();
        let (plan, ttl_s) = (plan.clone(), lease.ttl_s);
        workers.push(tokio::spawn(async move {
            let mut recorder = Recorder::new();
            let id = match client.grant(ttl_s, None).await {
                Ok(granted) => granted.id(),
                Err(e) => {
                    recorder.record_error(&format!("grant: {}", error_kind(&e)));
                    return recorder;
                }
            };
            let (mut keeper, mut stream) = match client.keep_alive(id).await {
                Ok(pair) => pair,
                Err(e) => {
                    recorder.record_error(&format!("keep-alive stream: {}", error_kind(&e)));
                    return recorder;
                }
            };
            while plan.next().is_some() {
                let sent = Instant::now();
                let answer = match keeper.keep_alive().await {
                    Ok(()) => stream.message().await,
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(Some(response)) if response.ttl() > 0 => recorder.record_ok(sent.elapsed()),
                    Ok(Some(_)) => recorder.record_error("keep-alive: the lease expired (TTL 0)"),
                    Ok(None) => {
                        recorder.record_error("keep-alive: the stream ended");
                        plan.answered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Err(e) => recorder.record_error(&error_kind(&e)),
                }
                plan.answered.fetch_add(1, Ordering::Relaxed);
            }
            // Best effort: a lease left behind expires after its TTL anyway.
            let _ = client.revoke(id).await;
            recorder
        }));
    }
    let mut recorder = Recorder::new();
    for worker in workers {
        match worker.await {
            Ok(r) => recorder.merge(&r),
            Err(e) => recorder.record_error(&format!("worker failed: {e}")),
        }
    }
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    report.summary = recorder.summary(elapsed);
    Ok(report)
}

/// The value of put `seq` in watch run `nonce`: both in hex, then padding.
pub fn watch_value(nonce: u64, seq: u64, size: u64) -> Vec<u8> {
    let mut value = format!("{nonce:016x}{seq:016x}").into_bytes();
    value.resize(size.max(WATCH_VALUE_BYTES_MIN) as usize, b'.');
    value
}

/// The put number a watch event's value carries, if it belongs to run `nonce`.
pub fn watch_seq(nonce: u64, value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value.get(..WATCH_VALUE_BYTES_MIN as usize)?).ok()?;
    let (run, seq) = text.split_at(16);
    (u64::from_str_radix(run, 16).ok()? == nonce).then(|| u64::from_str_radix(seq, 16).ok()).flatten()
}

/// What the putter and the watchers of a watch run share.
struct WatchShared {
    nonce: u64,
    started: Instant,
    /// When put `n` was sent, in nanoseconds after `started`, plus one (0: not sent).
    sent_ns: Vec<AtomicU64>,
    /// Puts that succeeded; each is an event every watcher must see.
    puts_ok: AtomicU64,
    /// Set when the last put has been answered, with the time it was.
    puts_done: AtomicBool,
    puts_done_ns: AtomicU64,
    /// Watchers registered (created responses received).
    created: AtomicU64,
    plan: Plan,
}

/// watch: `--watchers` watchers of one key over `--streams` streams; puts to the
/// key at `--put-rate`; each event's latency is from its put being sent to the
/// watcher receiving it. Events not delivered within `--grace` of the last put
/// count as errors.
async fn run_watch(args: &BenchArgs, watch: &WatchArgs, conns: &[Client]) -> Result<Report, String> {
    let mut report = base_report(args, "events");
    for (key, value) in [("watchers", watch.watchers), ("streams", watch.streams), ("put_rate", watch.put_rate)] {
        report.params.insert(key.into(), value.into());
    }
    let started = Instant::now();
    // Tells this run's events from any other writer's: the process id and the clock.
    let clock_ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let nonce = u64::from(std::process::id()) << 32 | u64::from(clock_ns);
    let shared = Arc::new(WatchShared {
        nonce,
        started,
        sent_ns: (0..args.total).map(|_| AtomicU64::new(0)).collect(),
        puts_ok: AtomicU64::new(0),
        puts_done: AtomicBool::new(false),
        puts_done_ns: AtomicU64::new(0),
        created: AtomicU64::new(0),
        plan: Plan::new(args.total, None),
    });
    let key = watch.key.clone().into_bytes();
    // The watchers: stream j carries watchers/streams of them (the first ones one more).
    let mut streams = Vec::new();
    for j in 0..watch.streams {
        let count = watch.watchers / watch.streams + u64::from(j < watch.watchers % watch.streams);
        let mut client = conns[(j % conns.len() as u64) as usize].watch_client();
        let (shared, key, grace) = (shared.clone(), key.clone(), watch.grace);
        let (mut sender, mut receiver) =
            client.watch(key.clone(), None).await.map_err(|e| format!("watch: {}", error_kind(&e)))?.split();
        for _ in 1..count {
            sender.watch(key.clone(), None::<WatchOptions>).await.map_err(|e| format!("watch: {}", error_kind(&e)))?;
        }
        streams.push(tokio::spawn(async move {
            // The sender must live as long as the stream: dropping it ends the stream.
            let _sender = sender;
            let mut recorder = Recorder::new();
            let mut received = 0u64;
            // When this stream's last event arrived, after `shared.started`.
            let mut last_event = Duration::ZERO;
            loop {
                match tokio::time::timeout(Duration::from_millis(50), receiver.message()).await {
                    Ok(Ok(Some(response))) => {
                        if response.created() {
                            shared.created.fetch_add(1, Ordering::Relaxed);
                        }
                        if response.canceled() {
                            recorder.record_error(&format!("watch canceled: {}", response.cancel_reason()));
                        }
                        let now = shared.started.elapsed();
                        let now_ns = now.as_nanos() as u64;
                        if !response.events().is_empty() {
                            last_event = now;
                        }
                        for event in response.events() {
                            let seq = event.kv().and_then(|kv| watch_seq(shared.nonce, kv.value()));
                            match seq.and_then(|s| shared.sent_ns.get(s as usize)) {
                                Some(sent) => {
                                    let sent_ns = sent.load(Ordering::Acquire).saturating_sub(1);
                                    recorder.record_ok(Duration::from_nanos(now_ns.saturating_sub(sent_ns)));
                                    received += 1;
                                    shared.plan.answered.fetch_add(1, Ordering::Relaxed);
                                }
                                None => recorder.record_error("an event of another writer or run"),
                            }
                        }
                    }
                    Ok(Ok(None)) => {
                        recorder.record_error("the watch stream ended");
                        break;
                    }
                    Ok(Err(e)) => {
                        recorder.record_error(&format!("watch stream: {}", error_kind(&e)));
                        break;
                    }
                    Err(_) => {}
                }
                if shared.puts_done.load(Ordering::Acquire) {
                    let expected = shared.puts_ok.load(Ordering::Acquire) * count;
                    let since_done = shared
                        .started
                        .elapsed()
                        .saturating_sub(Duration::from_nanos(shared.puts_done_ns.load(Ordering::Acquire)));
                    if received >= expected || since_done > grace {
                        recorder.record_errors(
                            &format!("event not delivered within {} ms of the last put", grace.as_millis()),
                            expected.saturating_sub(received),
                        );
                        break;
                    }
                }
            }
            (recorder, last_event)
        }));
    }
    // Every watcher is registered before the first put, or it would miss events.
    let registered_by = Instant::now() + Duration::from_secs(30);
    while shared.created.load(Ordering::Relaxed) < watch.watchers {
        if Instant::now() > registered_by {
            return Err(format!(
                "only {} of {} watchers were created within 30 s",
                shared.created.load(Ordering::Relaxed),
                watch.watchers
            ));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let bar = progress_bar(args.total * watch.watchers, "events");
    let progress = {
        let (bar, shared, stop) = (bar.clone(), shared.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                bar.set_position(shared.plan.answered.load(Ordering::Relaxed));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            bar.finish_and_clear();
        })
    };
    // The putters: --clients of them, together at --put-rate (0: unthrottled).
    let puts_started = Instant::now();
    let puts_started_after = shared.started.elapsed();
    let deadline = args.duration.map(|d| puts_started + d);
    let put_plan = Arc::new(Plan::new(args.total, deadline));
    let mut putters = Vec::new();
    for index in 0..args.clients {
        let mut kv = conns[(index % conns.len() as u64) as usize].kv_client();
        let (shared, put_plan, key, val_size) = (shared.clone(), put_plan.clone(), key.clone(), args.val_size);
        let interval =
            (watch.put_rate > 0).then(|| Duration::from_secs_f64(args.clients as f64 / watch.put_rate as f64));
        putters.push(tokio::spawn(async move {
            let mut recorder = Recorder::new();
            let mut ticker = interval.map(|i| {
                let mut t = tokio::time::interval_at(tokio::time::Instant::now() + i.mul_f64(index as f64 / 8.0), i);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                t
            });
            loop {
                if let Some(t) = ticker.as_mut() {
                    t.tick().await;
                }
                let Some(seq) = put_plan.next() else { break };
                let value = watch_value(shared.nonce, seq, val_size);
                let sent_ns = shared.started.elapsed().as_nanos() as u64 + 1;
                shared.sent_ns[seq as usize].store(sent_ns, Ordering::Release);
                match kv.put(key.clone(), value, None).await {
                    Ok(_) => {
                        shared.puts_ok.fetch_add(1, Ordering::AcqRel);
                    }
                    Err(e) => recorder.record_error(&format!("put: {}", error_kind(&e))),
                }
            }
            recorder
        }));
    }
    let mut recorder = Recorder::new();
    for putter in putters {
        match putter.await {
            Ok(r) => recorder.merge(&r),
            Err(e) => recorder.record_error(&format!("putter failed: {e}")),
        }
    }
    shared.puts_done_ns.store(shared.started.elapsed().as_nanos() as u64, Ordering::Release);
    shared.puts_done.store(true, Ordering::Release);
    // The run lasts from the first put to the last event delivered (not to the
    // end of the grace period, nor to when a stream noticed it was done).
    let mut last_event = Duration::ZERO;
    for stream in streams {
        match stream.await {
            Ok((r, last)) => {
                recorder.merge(&r);
                last_event = last_event.max(last);
            }
            Err(e) => recorder.record_error(&format!("watch stream task failed: {e}")),
        }
    }
    let elapsed =
        if last_event > puts_started_after { last_event - puts_started_after } else { puts_started.elapsed() };
    stop.store(true, Ordering::Relaxed);
    let _ = progress.await;
    report.params.insert("puts_ok".into(), shared.puts_ok.load(Ordering::Relaxed).into());
    report.summary = recorder.summary(elapsed);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_fixed_width_and_distinct() {
        assert_eq!(key_of(42, 8), b"00000042");
        assert_eq!(key_of(99_999_999, 8), b"99999999");
        assert_ne!(key_of(1, 4), key_of(10, 4));
    }

    #[test]
    fn values_are_sized_printable_and_repeatable() {
        let v = value_of(256, 7);
        assert_eq!(v.len(), 256);
        assert!(v.iter().all(|b| b.is_ascii_lowercase()));
        assert_eq!(v, value_of(256, 7));
        assert!(value_of(0, 7).is_empty());
    }

    #[test]
    fn watch_values_carry_their_sequence_number() {
        let v = watch_value(0xfeed, 123_456, 256);
        assert_eq!(v.len(), 256);
        assert_eq!(watch_seq(0xfeed, &v), Some(123_456));
        assert_eq!(watch_seq(0xbeef, &v), None, "another run's event");
        assert_eq!(watch_seq(0xfeed, b"short"), None);
        assert_eq!(watch_seq(0xfeed, &[0xff; 40]), None);
        assert_eq!(watch_value(1, 2, 8).len(), WATCH_VALUE_BYTES_MIN as usize);
    }

    #[test]
    fn the_plan_stops_at_the_total_and_at_the_deadline() {
        let plan = Plan::new(3, None);
        assert_eq!((plan.next(), plan.next(), plan.next(), plan.next()), (Some(0), Some(1), Some(2), None));
        let past = Plan::new(100, Some(Instant::now()));
        assert_eq!(past.next(), None);
    }

    #[test]
    fn grpc_errors_are_described_by_code_and_message() {
        let e = etcd_client::Error::GRpcStatus(tonic::Status::unavailable("etcdserver: leader changed"));
        assert_eq!(error_kind(&e), "Unavailable: etcdserver: leader changed");
    }
}
