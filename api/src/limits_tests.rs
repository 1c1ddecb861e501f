use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::*;

/// A clock that moves only when told.
#[derive(Clone)]
struct FakeClock(Rc<Cell<Instant>>);

impl FakeClock {
    fn new() -> FakeClock {
        FakeClock(Rc::new(Cell::new(Instant::now())))
    }

    fn now(&self) -> Instant {
        self.0.get()
    }

    fn advance_ms(&self, ms: u64) {
        self.0.set(self.0.get() + Duration::from_millis(ms));
    }

    fn boxed(&self) -> Box<dyn Fn() -> Instant> {
        let cell = self.0.clone();
        Box::new(move || cell.get())
    }
}

fn limiter(config: LimitsConfig) -> (Rc<Limiter>, FakeClock) {
    let clock = FakeClock::new();
    (Rc::new(Limiter::with_clock(config, clock.boxed())), clock)
}

/// Takes `n` tokens in a row at the same instant; which were granted.
fn takes(bucket: &mut TokenBucket, now: Instant, n: usize) -> Vec<bool> {
    (0..n).map(|_| bucket.try_take(now)).collect()
}

#[test]
fn bucket_starts_full_then_refills_at_its_rate() {
    let clock = FakeClock::new();
    let mut bucket = TokenBucket::new(2, 3, clock.now());
    assert_eq!(takes(&mut bucket, clock.now(), 4), [true, true, true, false], "a burst of 3, then empty");
    clock.advance_ms(499);
    assert!(!bucket.try_take(clock.now()), "2/s: no whole token after 499 ms");
    clock.advance_ms(1);
    assert!(bucket.try_take(clock.now()), "one token after 500 ms");
    assert!(!bucket.try_take(clock.now()));
    clock.advance_ms(1250);
    assert_eq!(takes(&mut bucket, clock.now(), 3), [true, true, false], "2.5 tokens refilled: two whole ones");
    clock.advance_ms(250);
    assert!(bucket.try_take(clock.now()), "the half token left over plus 250 ms make one");
}

#[test]
fn bucket_never_holds_more_than_its_burst() {
    let clock = FakeClock::new();
    let mut bucket = TokenBucket::new(10, 5, clock.now());
    clock.advance_ms(3_600_000);
    assert_eq!(bucket.available(clock.now()), 5);
    assert_eq!(takes(&mut bucket, clock.now(), 6), [true, true, true, true, true, false]);
    bucket.refund();
    bucket.refund();
    assert_eq!(bucket.available(clock.now()), 2);
    for _ in 0..10 {
        bucket.refund();
    }
    assert_eq!(bucket.available(clock.now()), 5, "refunds are capped at the burst too");
}

#[test]
fn bucket_burst_zero_means_the_rate_and_at_least_one() {
    let clock = FakeClock::new();
    assert_eq!(TokenBucket::new(7, 0, clock.now()).burst(), 7);
    let mut slow = TokenBucket::new(0, 0, clock.now());
    assert_eq!(slow.burst(), 1);
    assert!(slow.try_take(clock.now()));
    clock.advance_ms(10_000);
    assert!(!slow.try_take(clock.now()), "rate 0 never refills");
}

#[test]
fn bucket_ignores_a_clock_going_backwards() {
    let clock = FakeClock::new();
    let start = clock.now();
    clock.advance_ms(1000);
    let mut bucket = TokenBucket::new(1, 1, clock.now());
    assert!(bucket.try_take(clock.now()));
    assert!(!bucket.try_take(start), "an earlier instant adds nothing");
    assert!(!bucket.try_take(clock.now()), "and does not add the same second twice later");
}

#[test]
fn global_limit_refuses_with_the_limit_named_and_counts() {
    let (limiter, clock) = limiter(LimitsConfig { global_qps: 10, global_burst: 2, ..LimitsConfig::default() });
    assert!(limiter.admit_global().is_ok());
    assert!(limiter.admit_global().is_ok());
    let refused = limiter.admit_global().expect_err("the burst is spent");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refused.message(), "lockstep: rate limit exceeded: global 10 req/s (burst 2)");
    clock.advance_ms(100);
    assert!(limiter.admit_global().is_ok(), "10/s: a token every 100 ms");
    assert!(limiter.admit_global().is_err());
    assert_eq!(limiter.stats().rejected, BTreeMap::from([("global", 2)]));
}

#[test]
fn user_limits_are_per_user_and_give_the_global_token_back() {
    let config = LimitsConfig {
        global_qps: 100,
        global_burst: 4,
        user_qps: 1,
        user_burst: 1,
        users: BTreeMap::from([("batch".to_string(), UserLimits { qps: 0, burst: 0 })]),
        ..LimitsConfig::default()
    };
    let (limiter, _clock) = limiter(config);
    let admit = |user: &str| limiter.admit_global().and_then(|()| limiter.admit_user(user));
    assert!(admit("greedy").is_ok());
    let refused = admit("greedy").expect_err("greedy's one token is spent");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refused.message(), "lockstep: rate limit exceeded: user \"greedy\" 1 req/s (burst 1)");
    assert!(admit("greedy").is_err());
    // greedy's two refusals gave their global tokens back: 3 of 4 are left.
    assert!(admit("polite").is_ok(), "another user has a bucket of its own");
    assert!(admit("batch").is_ok(), "a user without a rate is not limited");
    assert!(admit("batch").is_ok());
    assert_eq!(
        admit("batch").expect_err("now the global bucket is empty").message(),
        "lockstep: rate limit exceeded: global 100 req/s (burst 4)"
    );
    assert_eq!(limiter.stats().rejected, BTreeMap::from([("global", 1), ("user", 2)]));
}

#[test]
fn no_rates_configured_admits_everything() {
    let (limiter, _clock) = limiter(LimitsConfig::default());
    for _ in 0..10_000 {
        assert!(limiter.admit_global().is_ok());
        assert!(limiter.admit_user("anyone").is_ok());
    }
    assert_eq!(limiter.stats(), LimitStats::default());
}

#[test]
fn a_new_config_applies_at_once() {
    let (limiter, _clock) = limiter(LimitsConfig { global_qps: 1, global_burst: 1, ..LimitsConfig::default() });
    assert!(limiter.admit_global().is_ok());
    assert!(limiter.admit_global().is_err());
    limiter.set_config(LimitsConfig { global_qps: 0, ..LimitsConfig::default() });
    assert!(limiter.admit_global().is_ok(), "the global limit is off");
    limiter.set_config(LimitsConfig { user_qps: 1, ..LimitsConfig::default() });
    assert!(limiter.admit_user("u").is_ok());
    assert!(limiter.admit_user("u").is_err());
}

#[test]
fn sizes_and_counts() {
    let config = LimitsConfig {
        max_key_bytes: 8,
        max_value_bytes: 16,
        max_watches_per_stream: 2,
        max_leases: 3,
        ..LimitsConfig::default()
    };
    let (limiter, _clock) = limiter(config);
    assert!(limiter.check_put(8, 16).is_ok());
    assert_eq!(
        limiter.check_put(9, 0).expect_err("key too long").message(),
        "lockstep: limit exceeded: key of 9 bytes, limits.max_key_bytes is 8"
    );
    assert_eq!(
        limiter.check_put(1, 17).expect_err("value too long").message(),
        "lockstep: limit exceeded: value of 17 bytes, limits.max_value_bytes is 16"
    );
    assert!(limiter.check_watches(1).is_ok());
    let refused = limiter.check_watches(2).expect_err("2 watchers already");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refused.message(), "lockstep: limit exceeded: 2 watches per stream (limits.max_watches_per_stream)");
    assert!(limiter.check_leases(2).is_ok());
    assert_eq!(
        limiter.check_leases(3).expect_err("3 leases exist").message(),
        "lockstep: limit exceeded: 3 leases (limits.max_leases)"
    );
    assert_eq!(
        limiter.stats().rejected,
        BTreeMap::from([("key_bytes", 1), ("value_bytes", 1), ("watches_per_stream", 1), ("leases", 1)])
    );
}

#[test]
fn connections_per_source_are_counted_until_dropped() {
    let (limiter, _clock) = limiter(LimitsConfig { max_connections_per_source: 2, ..LimitsConfig::default() });
    let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
    let first = limiter.open_connection(a).expect("first");
    let second = limiter.open_connection(a).expect("second");
    assert!(limiter.open_connection(a).is_none(), "a third from the same address is refused");
    let other = limiter.open_connection(b).expect("another address has its own count");
    assert_eq!(limiter.connections_from(a), 2);
    drop(first);
    assert_eq!(limiter.connections_from(a), 1);
    let third = limiter.open_connection(a).expect("a slot was freed");
    drop((second, third, other));
    assert_eq!(limiter.connections_from(a), 0);
    assert_eq!(limiter.stats().rejected, BTreeMap::from([("connections_per_source", 1)]));
}

fn lockout_config() -> LimitsConfig {
    LimitsConfig {
        auth_failures_max: 3,
        auth_failure_window_ms: 10_000,
        auth_lockout_ms: 2_000,
        auth_lockout_max_ms: 5_000,
        ..LimitsConfig::default()
    }
}

#[test]
fn failed_logins_lock_a_user_out_with_a_growing_backoff() {
    let (limiter, clock) = limiter(lockout_config());
    let fail = || {
        limiter.auth_admit("alice", None).expect("not locked out");
        limiter.auth_failed("alice", None, true);
    };
    fail();
    fail();
    fail();
    let refused = limiter.auth_admit("alice", None).expect_err("3 failures lock alice out");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert_eq!(refused.message(), "etcdserver: authentication failed, too many attempts; retry in 2s");
    assert!(limiter.auth_admit("bob", None).is_ok(), "other users are not locked out");
    clock.advance_ms(1_500);
    assert_eq!(
        limiter.auth_admit("alice", None).expect_err("still locked").message(),
        "etcdserver: authentication failed, too many attempts; retry in 1s",
        "the time left is rounded up"
    );
    clock.advance_ms(500);
    // The second lock-out lasts twice as long, the third is capped at 5 s.
    fail();
    fail();
    fail();
    assert!(limiter.auth_admit("alice", None).expect_err("locked").message().ends_with("retry in 4s"));
    clock.advance_ms(4_000);
    fail();
    fail();
    fail();
    assert!(limiter.auth_admit("alice", None).expect_err("locked").message().ends_with("retry in 5s"));
    let stats = limiter.stats();
    assert_eq!(stats.auth_failures, BTreeMap::from([("bad_password", 9), ("locked_out", 4)]));
    assert_eq!(stats.auth_lockouts, BTreeMap::from([("user", 3)]));
}

#[test]
fn failures_outside_the_window_do_not_add_up() {
    let (limiter, clock) = limiter(lockout_config());
    limiter.auth_failed("alice", None, true);
    limiter.auth_failed("alice", None, true);
    clock.advance_ms(10_000);
    limiter.auth_failed("alice", None, true);
    assert!(limiter.auth_admit("alice", None).is_ok(), "the first two fell out of the 10 s window");
    limiter.auth_failed("alice", None, true);
    limiter.auth_failed("alice", None, true);
    assert!(limiter.auth_admit("alice", None).is_err());
}

#[test]
fn a_successful_login_resets_the_user_but_not_the_source() {
    let (limiter, _clock) = limiter(lockout_config());
    let source = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    limiter.auth_failed("alice", source, true);
    limiter.auth_failed("alice", source, true);
    limiter.auth_succeeded("alice");
    limiter.auth_failed("alice", source, true);
    assert!(limiter.auth_admit("alice", None).is_ok(), "alice's count started over");
    let refused = limiter.auth_admit("carol", source).expect_err("the source made 3 failed attempts");
    assert_eq!(refused.message(), "etcdserver: authentication failed, too many attempts; retry in 2s");
    assert!(limiter.auth_admit("carol", Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9)))).is_ok());
    assert_eq!(limiter.stats().auth_lockouts, BTreeMap::from([("source", 1)]));
}

#[test]
fn guessing_many_user_names_from_one_source_locks_the_source_out() {
    let (limiter, _clock) = limiter(lockout_config());
    let source = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)));
    for name in ["a", "b", "c"] {
        limiter.auth_admit(name, source).expect("not yet");
        limiter.auth_failed(name, source, false);
    }
    assert!(limiter.auth_admit("d", source).is_err());
    assert_eq!(limiter.stats().auth_failures, BTreeMap::from([("locked_out", 1), ("unknown_user", 3)]));
}

#[test]
fn lockout_off_when_failures_max_is_zero() {
    let (limiter, _clock) = limiter(LimitsConfig { auth_failures_max: 0, ..LimitsConfig::default() });
    for _ in 0..100 {
        limiter.auth_failed("alice", None, true);
    }
    assert!(limiter.auth_admit("alice", None).is_ok());
    assert_eq!(limiter.stats().auth_failures, BTreeMap::from([("bad_password", 100)]));
}

#[test]
fn merged_changes_fields_and_refuses_unknown_ones() {
    let config = LimitsConfig::default();
    let merged =
        config.merged(&serde_json::json!({"user_qps": 20, "users": {"batch": {"qps": 500}}})).expect("valid changes");
    assert_eq!(merged.user_qps, 20);
    assert_eq!(merged.users["batch"], UserLimits { qps: 500, burst: 0 });
    assert_eq!(merged.max_leases, config.max_leases, "other fields are kept");
    assert_eq!(config.merged(&serde_json::json!({"user_qbs": 1})), Err("unknown limit \"user_qbs\"".to_string()));
    assert!(config.merged(&serde_json::json!({"user_qps": -1})).is_err());
    assert!(config.merged(&serde_json::json!([1])).is_err());
    assert!(config.merged(&serde_json::json!({"auth_lockout_max_ms": 10})).is_err(), "below auth_lockout_ms");
}
