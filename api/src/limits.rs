//! Rate limits, per-client limits and the failed-login lock-out of one member.
//!
//! A [`Limiter`] is shared by every connection of a member (one executor
//! thread: `Rc` and `RefCell`, no locks) and decides, from its
//! [`LimitsConfig`] and a clock, whether a request may proceed:
//!
//! - **Request rate** ([`Limiter::admit_global`], [`Limiter::admit_user`]):
//!   token buckets ([`TokenBucket`]) refilled at `qps` tokens per second up
//!   to `burst`; each gRPC call or JSON gateway request (a stream counts once,
//!   when it opens) takes one token from the member's global bucket and, when
//!   the caller is an authenticated user, one from that user's bucket. A
//!   request refused by its user's bucket gives its global token back, so one
//!   greedy user does not use up the member's budget with refused requests.
//! - **Sizes and counts** a client controls: key and value bytes of a put
//!   ([`Limiter::check_put`]), watches per stream ([`Limiter::check_watches`]),
//!   leases ([`Limiter::check_leases`]) and connections per source address
//!   ([`Limiter::open_connection`]).
//! - **Failed `Authenticate` lock-out** ([`Limiter::auth_admit`],
//!   [`Limiter::auth_failed`], [`Limiter::auth_succeeded`]): per user name and
//!   per source address, `auth_failures_max` failures within
//!   `auth_failure_window_ms` lock further attempts out for `auth_lockout_ms`,
//!   doubled on each further lock-out up to `auth_lockout_max_ms`. A refused
//!   attempt is answered before any password check (no bcrypt is run).
//!
//! Every refusal is `RESOURCE_EXHAUSTED` with a message naming the limit, and
//! is counted in [`LimitStats`] (the node exports them as Prometheus
//! counters). Limits are per member: a client spreading its requests over
//! three members gets three times the rate. The configuration can be replaced
//! at runtime ([`Limiter::set_config`]); buckets then start over, full.
//!
//! Time comes only from the clock given to [`Limiter::with_clock`], so tests
//! move it by hand.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tonic::Status;

/// One token, in the bucket's unit (a billionth of a token), so that refill
/// is exact integer arithmetic: `qps` tokens per second are `qps` units per
/// nanosecond.
const TOKEN: u128 = 1_000_000_000;
/// Per-user buckets kept; past this they all start over (full).
const USER_BUCKETS_MAX: usize = 100_000;
/// Failed-login records kept per kind (user names, source addresses); past
/// this the idle ones are forgotten, then the oldest.
const AUTH_RECORDS_MAX: usize = 100_000;

/// A token bucket: up to `burst` tokens, refilled at `rate_per_s` tokens per
/// second; a request takes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBucket {
    rate_per_s: u64,
    burst: u64,
    /// Tokens held, in units of 1/[`TOKEN`].
    units: u128,
    /// When `units` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket (`burst` tokens; a burst of 0 means `rate_per_s`, and at
    /// least 1).
    pub fn new(rate_per_s: u64, burst: u64, now: Instant) -> TokenBucket {
        let burst = if burst == 0 { rate_per_s } else { burst }.max(1);
        TokenBucket { rate_per_s, burst, units: u128::from(burst) * TOKEN, updated: now }
    }

    /// The refill rate, tokens per second.
    pub fn rate_per_s(&self) -> u64 {
        self.rate_per_s
    }

    /// The capacity, tokens.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Whole tokens available at `now`.
    pub fn available(&mut self, now: Instant) -> u64 {
        self.refill(now);
        u64::try_from(self.units / TOKEN).unwrap_or(u64::MAX)
    }

    fn refill(&mut self, now: Instant) {
        let capacity = u128::from(self.burst) * TOKEN;
        // A clock that went backwards adds nothing (and does not move `updated`
        // back, which would add the same time twice).
        let Some(elapsed) = now.checked_duration_since(self.updated) else { return };
        self.updated = now;
        let added = elapsed.as_nanos().saturating_mul(u128::from(self.rate_per_s));
        self.units = self.units.saturating_add(added).min(capacity);
    }

    /// Takes one token if there is one at `now`.
    #[must_use]
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.units < TOKEN {
            return false;
        }
        self.units -= TOKEN;
        true
    }

    /// Gives back a token taken for a request that was then refused elsewhere.
    pub fn refund(&mut self) {
        self.units = (self.units + TOKEN).min(u128::from(self.burst) * TOKEN);
    }
}

/// A user's own request rate, instead of `user_qps`/`user_burst`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLimits {
    /// Requests per second; 0: unlimited.
    pub qps: u64,
    /// Bucket size; 0: equal to `qps`.
    #[serde(default)]
    pub burst: u64,
}

/// A member's limits. For every field, 0 means "no limit" (for bursts: equal
/// to the rate; for `auth_failures_max`: no lock-out).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests per second this member serves, all clients together.
    pub global_qps: u64,
    /// The global bucket's size: requests that may come at once.
    pub global_burst: u64,
    /// Requests per second of each authenticated user (unless in `users`).
    pub user_qps: u64,
    /// Each user's bucket size.
    pub user_burst: u64,
    /// Rates of named users, instead of `user_qps` and `user_burst`.
    pub users: BTreeMap<String, UserLimits>,
    /// Bytes of a key written by a put (also in a transaction).
    pub max_key_bytes: u64,
    /// Bytes of a value written by a put (also in a transaction).
    pub max_value_bytes: u64,
    /// Watchers one `Watch` stream may hold at once.
    pub max_watches_per_stream: u64,
    /// Client connections open at once from one IP address.
    pub max_connections_per_source: u64,
    /// Leases in the cluster; `LeaseGrant` is refused beyond.
    pub max_leases: u64,
    /// Failed `Authenticate` calls, per user and per source address, within
    /// `auth_failure_window_ms` that lock further attempts out.
    pub auth_failures_max: u64,
    /// The window failures are counted in, milliseconds.
    pub auth_failure_window_ms: u64,
    /// The first lock-out, milliseconds; each further one doubles it.
    pub auth_lockout_ms: u64,
    /// The longest lock-out, milliseconds.
    pub auth_lockout_max_ms: u64,
}

impl Default for LimitsConfig {
    /// No rate or size limit; generous per-client counts; lock-out after 5
    /// failures within a minute, for 1 s doubling up to 5 minutes.
    fn default() -> LimitsConfig {
        LimitsConfig {
            global_qps: 0,
            global_burst: 0,
            user_qps: 0,
            user_burst: 0,
            users: BTreeMap::new(),
            max_key_bytes: 0,
            max_value_bytes: 0,
            max_watches_per_stream: 10_000,
            max_connections_per_source: 1_000,
            max_leases: 1_000_000,
            auth_failures_max: 5,
            auth_failure_window_ms: 60_000,
            auth_lockout_ms: 1_000,
            auth_lockout_max_ms: 300_000,
        }
    }
}

impl LimitsConfig {
    /// Checks the relations between fields.
    pub fn validate(&self) -> Result<(), String> {
        if self.auth_failures_max > 0 {
            if self.auth_failure_window_ms == 0 {
                return Err("auth_failure_window_ms must be positive when auth_failures_max is set".into());
            }
            if self.auth_lockout_ms == 0 {
                return Err("auth_lockout_ms must be positive when auth_failures_max is set".into());
            }
            if self.auth_lockout_max_ms < self.auth_lockout_ms {
                return Err("auth_lockout_max_ms must be at least auth_lockout_ms".into());
            }
        }
        if self.users.keys().any(String::is_empty) {
            return Err("a user name in `users` is empty".into());
        }
        Ok(())
    }

    /// This configuration with the fields of the JSON object `changes`
    /// replaced (`users` as a whole); unknown fields and wrong types are
    /// refused, and so is a result that [`LimitsConfig::validate`] refuses.
    pub fn merged(&self, changes: &serde_json::Value) -> Result<LimitsConfig, String> {
        let serde_json::Value::Object(changes) = changes else {
            return Err("the body must be a JSON object of limits".into());
        };
        let mut merged = serde_json::to_value(self).map_err(|e| e.to_string())?;
        for (name, value) in changes {
            match merged.get_mut(name) {
                Some(slot) => *slot = value.clone(),
                None => return Err(format!("unknown limit {name:?}")),
            }
        }
        let merged: LimitsConfig = serde_json::from_value(merged).map_err(|e| e.to_string())?;
        merged.validate()?;
        Ok(merged)
    }

    /// The rate and burst of `user`'s bucket; `None`: unlimited.
    fn user_rate(&self, user: &str) -> Option<(u64, u64)> {
        let (qps, burst) = match self.users.get(user) {
            Some(own) => (own.qps, own.burst),
            None => (self.user_qps, self.user_burst),
        };
        (qps > 0).then_some((qps, burst))
    }
}

/// Counts of refusals, by label, since the member started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitStats {
    /// Requests (and connections, watches) refused, by limit: `global`,
    /// `user`, `key_bytes`, `value_bytes`, `watches_per_stream`,
    /// `connections_per_source`, `leases`.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Failed `Authenticate` calls, by reason: `bad_password`, `unknown_user`,
    /// `locked_out`.
    pub auth_failures: BTreeMap<&'static str, u64>,
    /// Lock-outs started, by scope: `user`, `source`.
    pub auth_lockouts: BTreeMap<&'static str, u64>,
}

/// The failed logins of one user name or source address.
#[derive(Debug, Clone)]
struct Failures {
    /// Failures counted in the current window.
    count: u64,
    window_start: Instant,
    /// Lock-outs so far (the next one lasts `auth_lockout_ms` × 2^this).
    lockouts: u32,
    locked_until: Option<Instant>,
    last_failure: Instant,
}

impl Failures {
    fn new(now: Instant) -> Failures {
        Failures { count: 0, window_start: now, lockouts: 0, locked_until: None, last_failure: now }
    }

    /// How long attempts stay refused after `now`.
    fn locked_for(&self, now: Instant) -> Option<Duration> {
        self.locked_until.and_then(|until| until.checked_duration_since(now)).filter(|d| !d.is_zero())
    }

    /// Counts a failure at `now`; true if it started a lock-out.
    fn fail(&mut self, now: Instant, config: &LimitsConfig) -> bool {
        let window = Duration::from_millis(config.auth_failure_window_ms);
        let lockout_max = Duration::from_millis(config.auth_lockout_max_ms);
        if now.saturating_duration_since(self.window_start) >= window {
            self.count = 0;
            self.window_start = now;
        }
        // Quiet for the longest lock-out since the last one ended: the backoff
        // starts over.
        if self.locked_until.is_some_and(|until| now.saturating_duration_since(until) >= lockout_max) {
            self.lockouts = 0;
            self.locked_until = None;
        }
        self.count += 1;
        self.last_failure = now;
        if self.count < config.auth_failures_max {
            return false;
        }
        let base = Duration::from_millis(config.auth_lockout_ms);
        let lockout = base.saturating_mul(1u32 << self.lockouts.min(31)).min(lockout_max);
        self.locked_until = Some(now + lockout);
        self.lockouts = self.lockouts.saturating_add(1);
        self.count = 0;
        self.window_start = now;
        true
    }

    /// Whether the record says nothing any more at `now`: no lock-out in
    /// force or remembered for the backoff, no failure in the window.
    fn idle(&self, now: Instant, config: &LimitsConfig) -> bool {
        let quiet = Duration::from_millis(config.auth_failure_window_ms.max(config.auth_lockout_max_ms));
        now.saturating_duration_since(self.last_failure) >= quiet
            && self.locked_until.is_none_or(|until| now.saturating_duration_since(until) >= quiet)
    }
}

/// Records a failure of `key` in `records` (bounded by [`AUTH_RECORDS_MAX`]);
/// true if it started a lock-out.
fn record_failure<K: Ord + Clone>(
    records: &mut BTreeMap<K, Failures>,
    key: &K,
    now: Instant,
    config: &LimitsConfig,
) -> bool {
    if !records.contains_key(key) && records.len() >= AUTH_RECORDS_MAX {
        records.retain(|_, r| !r.idle(now, config));
        if records.len() >= AUTH_RECORDS_MAX {
            let oldest = records.iter().min_by_key(|(_, r)| r.last_failure).map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                records.remove(&oldest);
            }
        }
    }
    records.entry(key.clone()).or_insert_with(|| Failures::new(now)).fail(now, config)
}

/// The rate limits, per-client limits and failed-login lock-outs of one
/// member (see the module doc).
pub struct Limiter {
    config: RefCell<LimitsConfig>,
    global: RefCell<Option<TokenBucket>>,
    users: RefCell<BTreeMap<String, TokenBucket>>,
    auth_users: RefCell<BTreeMap<String, Failures>>,
    auth_sources: RefCell<BTreeMap<IpAddr, Failures>>,
    connections: RefCell<BTreeMap<IpAddr, u64>>,
    stats: RefCell<LimitStats>,
    clock: Box<dyn Fn() -> Instant>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter").field("config", &self.config.borrow()).finish_non_exhaustive()
    }
}

impl Default for Limiter {
    fn default() -> Limiter {
        Limiter::new(LimitsConfig::default())
    }
}

impl Limiter {
    /// A limiter with `config` and the system's monotonic clock.
    pub fn new(config: LimitsConfig) -> Limiter {
        Limiter::with_clock(config, Box::new(Instant::now))
    }

    /// The same with another clock (tests move time forward with it).
    pub fn with_clock(config: LimitsConfig, clock: Box<dyn Fn() -> Instant>) -> Limiter {
        let limiter = Limiter {
            config: RefCell::new(LimitsConfig::default()),
            global: RefCell::new(None),
            users: RefCell::new(BTreeMap::new()),
            auth_users: RefCell::new(BTreeMap::new()),
            auth_sources: RefCell::new(BTreeMap::new()),
            connections: RefCell::new(BTreeMap::new()),
            stats: RefCell::new(LimitStats::default()),
            clock,
        };
        limiter.set_config(config);
        limiter
    }

    /// The limits in force.
    pub fn config(&self) -> LimitsConfig {
        self.config.borrow().clone()
    }

    /// Puts `config` in force at once. Rate buckets start over, full;
    /// failed-login records and open connections are kept.
    pub fn set_config(&self, config: LimitsConfig) {
        let now = (self.clock)();
        *self.global.borrow_mut() =
            (config.global_qps > 0).then(|| TokenBucket::new(config.global_qps, config.global_burst, now));
        self.users.borrow_mut().clear();
        *self.config.borrow_mut() = config;
    }

    /// The refusals counted so far.
    pub fn stats(&self) -> LimitStats {
        self.stats.borrow().clone()
    }

    fn reject(&self, limit: &'static str, message: String) -> Status {
        *self.stats.borrow_mut().rejected.entry(limit).or_default() += 1;
        Status::resource_exhausted(message)
    }

    /// Takes a token from the member's global bucket for one request.
    pub fn admit_global(&self) -> Result<(), Status> {
        let now = (self.clock)();
        let mut global = self.global.borrow_mut();
        let Some(bucket) = global.as_mut() else { return Ok(()) };
        if bucket.try_take(now) {
            return Ok(());
        }
        let message =
            format!("lockstep: rate limit exceeded: global {} req/s (burst {})", bucket.rate_per_s(), bucket.burst());
        drop(global);
        Err(self.reject("global", message))
    }

    /// Takes a token from `user`'s bucket for one request (admitted by
    /// [`Limiter::admit_global`] already, whose token is given back when this
    /// refuses).
    pub fn admit_user(&self, user: &str) -> Result<(), Status> {
        let Some((qps, burst)) = self.config.borrow().user_rate(user) else { return Ok(()) };
        let now = (self.clock)();
        let mut users = self.users.borrow_mut();
        if !users.contains_key(user) && users.len() >= USER_BUCKETS_MAX {
            users.clear();
        }
        let bucket = users.entry(user.to_string()).or_insert_with(|| TokenBucket::new(qps, burst, now));
        if bucket.try_take(now) {
            return Ok(());
        }
        let message = format!(
            "lockstep: rate limit exceeded: user {user:?} {} req/s (burst {})",
            bucket.rate_per_s(),
            bucket.burst()
        );
        drop(users);
        if let Some(global) = self.global.borrow_mut().as_mut() {
            global.refund();
        }
        Err(self.reject("user", message))
    }

    /// Checks the key and value sizes of a put.
    pub fn check_put(&self, key_bytes: usize, value_bytes: usize) -> Result<(), Status> {
        let (key_max, value_max) = {
            let config = self.config.borrow();
            (config.max_key_bytes, config.max_value_bytes)
        };
        if key_max > 0 && key_bytes as u64 > key_max {
            return Err(self.reject(
                "key_bytes",
                format!("lockstep: limit exceeded: key of {key_bytes} bytes, limits.max_key_bytes is {key_max}"),
            ));
        }
        if value_max > 0 && value_bytes as u64 > value_max {
            return Err(self.reject(
                "value_bytes",
                format!(
                    "lockstep: limit exceeded: value of {value_bytes} bytes, limits.max_value_bytes is {value_max}"
                ),
            ));
        }
        Ok(())
    }

    /// Checks that a stream holding `watchers` watchers may create one more.
    pub fn check_watches(&self, watchers: usize) -> Result<(), Status> {
        let max = self.config.borrow().max_watches_per_stream;
        if max > 0 && watchers as u64 >= max {
            return Err(self.reject(
                "watches_per_stream",
                format!("lockstep: limit exceeded: {max} watches per stream (limits.max_watches_per_stream)"),
            ));
        }
        Ok(())
    }

    /// Checks that a lease may be granted while `leases` exist.
    pub fn check_leases(&self, leases: usize) -> Result<(), Status> {
        let max = self.config.borrow().max_leases;
        if max > 0 && leases as u64 >= max {
            return Err(self.reject("leases", format!("lockstep: limit exceeded: {max} leases (limits.max_leases)")));
        }
        Ok(())
    }

    /// Whether a lease count is needed at all (it costs a scan of the leases).
    pub fn limits_leases(&self) -> bool {
        self.config.borrow().max_leases > 0
    }

    /// Admits a new connection from `source`: a permit to hold while it is
    /// open, or `None` (counted) when that address has
    /// `max_connections_per_source` open already.
    pub fn open_connection(self: &Rc<Self>, source: IpAddr) -> Option<ConnectionPermit> {
        let max = self.config.borrow().max_connections_per_source;
        let mut connections = self.connections.borrow_mut();
        let open = connections.entry(source).or_insert(0);
        if max > 0 && *open >= max {
            drop(connections);
            *self.stats.borrow_mut().rejected.entry("connections_per_source").or_default() += 1;
            return None;
        }
        *open += 1;
        Some(ConnectionPermit { limiter: self.clone(), source })
    }

    /// Connections open from `source`.
    pub fn connections_from(&self, source: IpAddr) -> u64 {
        self.connections.borrow().get(&source).copied().unwrap_or(0)
    }

    fn close_connection(&self, source: IpAddr) {
        let mut connections = self.connections.borrow_mut();
        if let Some(open) = connections.get_mut(&source) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                connections.remove(&source);
            }
        }
    }

    fn count_auth_failure(&self, reason: &'static str) {
        *self.stats.borrow_mut().auth_failures.entry(reason).or_default() += 1;
    }

    /// Before checking a password: refuses (counted as a `locked_out`
    /// failure) while `user` or `source` is locked out.
    pub fn auth_admit(&self, user: &str, source: Option<IpAddr>) -> Result<(), Status> {
        if self.config.borrow().auth_failures_max == 0 {
            return Ok(());
        }
        let now = (self.clock)();
        let by_user = self.auth_users.borrow().get(user).and_then(|r| r.locked_for(now));
        let by_source = source.and_then(|s| self.auth_sources.borrow().get(&s).and_then(|r| r.locked_for(now)));
        let Some(left) = by_user.max(by_source) else { return Ok(()) };
        self.count_auth_failure("locked_out");
        let seconds = left.as_millis().div_ceil(1000);
        Err(Status::resource_exhausted(format!(
            "etcdserver: authentication failed, too many attempts; retry in {seconds}s"
        )))
    }

    /// Counts a failed password check (`known_user`: the user exists) of
    /// `user` from `source`; may start a lock-out of either.
    pub fn auth_failed(&self, user: &str, source: Option<IpAddr>, known_user: bool) {
        self.count_auth_failure(if known_user { "bad_password" } else { "unknown_user" });
        let config = self.config.borrow().clone();
        if config.auth_failures_max == 0 {
            return;
        }
        let now = (self.clock)();
        if record_failure(&mut self.auth_users.borrow_mut(), &user.to_string(), now, &config) {
            *self.stats.borrow_mut().auth_lockouts.entry("user").or_default() += 1;
        }
        if let Some(source) = source {
            if record_failure(&mut self.auth_sources.borrow_mut(), &source, now, &config) {
                *self.stats.borrow_mut().auth_lockouts.entry("source").or_default() += 1;
            }
        }
    }

    /// A successful login of `user`: its failures and backoff are forgotten
    /// (its source's are not: one valid account must not reset the count of
    /// guesses at others).
    pub fn auth_succeeded(&self, user: &str) {
        self.auth_users.borrow_mut().remove(user);
    }
}

/// An open connection counted against its source address; dropping it
/// (when the connection ends) frees the slot.
pub struct ConnectionPermit {
    limiter: Rc<Limiter>,
    source: IpAddr,
}

impl std::fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionPermit").field("source", &self.source).finish_non_exhaustive()
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        self.limiter.close_connection(self.source);
    }
}

#[cfg(test)]
#[path = "limits_tests.rs"]
mod tests;
