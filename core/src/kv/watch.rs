//! The watch hub: watchers over key ranges, fed with every committed revision,
//! with bounded buffers and catch-up from storage.
//!
//! A watcher is *synced* while it has seen every revision up to the hub's last
//! one; the write path then hands it the events of each new revision
//! ([`WatchHub::notify`]). When its buffer is full it becomes *unsynced* instead
//! of growing or blocking the write, and [`WatchHub::catch_up`] later reads the
//! revisions it missed from the store's history, a bounded amount per call,
//! until it is synced again. A watcher created at an old revision starts
//! unsynced. Each watcher's `next_rev` is the first revision it has not been
//! given yet, so every event is delivered once, in revision order. A watcher
//! that falls behind the compaction revision is canceled with etcd's compacted
//! response.

use std::collections::{BTreeMap, VecDeque};

use super::key_index::KeyRange;
use super::mvcc::Mvcc;
use super::request::{Event, EventKind, ResponseHeader, Revision};
use super::storage::Storage;

/// Identifies a watcher.
pub type WatchId = i64;

/// The reason etcd gives when a watch falls behind compaction.
pub const COMPACTED_REASON: &str = "etcdserver: mvcc: required revision has been compacted";
/// The reason etcd gives for a duplicate explicit watch id.
pub const DUPLICATE_ID_REASON: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// Revisions whose events one catch-up response carries at most (etcd's
/// `watchBatchMaxRevs`).
pub const CATCH_UP_REVISIONS_MAX: usize = 1000;
/// The reason given when the hub holds `watchers_max` watchers.
pub const TOO_MANY_WATCHERS_REASON: &str = "lockstep: too many watchers";

/// Limits of the hub. Memory is bounded by `watchers_max` times the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchConfig {
    /// Events buffered per watcher before it falls back to catch-up (a single
    /// revision larger than this is still delivered whole).
    pub buffer_events_max: u32,
    /// Responses buffered per watcher.
    pub buffer_responses_max: u32,
    /// Watchers in the hub.
    pub watchers_max: u32,
    /// Stored changes one watcher reads per [`WatchHub::catch_up`] call (at least
    /// one whole revision is always read).
    pub catch_up_changes_max: u32,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            buffer_events_max: 1024,
            buffer_responses_max: 128,
            watchers_max: 10_000,
            catch_up_changes_max: 4096,
        }
    }
}

/// etcd's `WatchCreateRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchCreateRequest {
    /// The first key.
    pub key: Vec<u8>,
    /// As in [`crate::kv::RangeRequest::range_end`].
    pub range_end: Vec<u8>,
    /// The first revision to report (0: the next one).
    pub start_revision: Revision,
    /// Send progress notifications on [`WatchHub::progress`] ticks.
    pub progress_notify: bool,
    /// Leave out put events.
    pub no_put: bool,
    /// Leave out delete events.
    pub no_delete: bool,
    /// Include each event's previous key-value.
    pub prev_kv: bool,
    /// The id to use; 0 lets the hub choose.
    pub watch_id: WatchId,
}

/// etcd's `WatchResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchResponse {
    /// For events: their revision; otherwise the hub's revision.
    pub header: ResponseHeader,
    /// The watcher.
    pub watch_id: WatchId,
    /// Answers the create request.
    pub created: bool,
    /// The watcher is gone; see `cancel_reason` and `compact_revision`.
    pub canceled: bool,
    /// Set when canceled because the watcher needs compacted revisions: the
    /// lowest revision still available.
    pub compact_revision: Revision,
    /// Why the watcher was canceled.
    pub cancel_reason: String,
    /// The events of one revision, in change order.
    pub events: Vec<Event>,
}

#[derive(Debug, Clone)]
struct Watcher {
    range: KeyRange,
    /// Revisions before this one are not reported (future start revisions).
    start_rev: Revision,
    /// The first revision not yet examined for this watcher.
    next_rev: Revision,
    synced: bool,
    /// Canceled; removed once its buffer is drained.
    done: bool,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    progress_notify: bool,
    buffer: VecDeque<WatchResponse>,
    buffered_events: usize,
}

impl Watcher {
    fn wants(&self, event: &Event) -> bool {
        let filtered = match event.kind {
            EventKind::Put => self.no_put,
            EventKind::Delete => self.no_delete,
        };
        !filtered && self.range.contains(&event.kv.key)
    }

    fn select(&self, events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .filter(|e| self.wants(e))
            .map(|e| Event { prev_kv: if self.prev_kv { e.prev_kv.clone() } else { None }, ..e.clone() })
            .collect()
    }

    fn has_room(&self, config: &WatchConfig, events: usize) -> bool {
        self.buffer.is_empty()
            || (self.buffer.len() < config.buffer_responses_max as usize
                && self.buffered_events + events <= config.buffer_events_max as usize)
    }

    fn push(&mut self, response: WatchResponse) {
        self.buffered_events += response.events.len();
        self.buffer.push_back(response);
    }
}

/// The watchers of one member. See the module doc for the delivery contract.
///
/// Inputs: [`WatchHub::create`], [`WatchHub::cancel`], [`WatchHub::notify`] (after
/// every committed revision), [`WatchHub::reset`] (after a snapshot restore),
/// [`WatchHub::progress`]. Work: [`WatchHub::catch_up`]. Outputs:
/// [`WatchHub::poll`], [`WatchHub::take`].
#[derive(Debug, Clone)]
pub struct WatchHub {
    config: WatchConfig,
    watchers: BTreeMap<WatchId, Watcher>,
    next_id: WatchId,
    /// The last revision the hub was told of.
    notified_rev: Revision,
    /// Where [`WatchHub::poll`] resumes, for fairness.
    poll_from: WatchId,
}

impl WatchHub {
    /// An empty hub over a store at `current_rev`.
    pub fn new(config: WatchConfig, current_rev: Revision) -> WatchHub {
        WatchHub { config, watchers: BTreeMap::new(), next_id: 0, notified_rev: current_rev, poll_from: 0 }
    }

    /// Adds a watcher. Its first response (`created`) is queued; an older
    /// `start_revision` is caught up from storage. A refused watcher gets its
    /// canceled response back instead.
    pub fn create(&mut self, req: WatchCreateRequest) -> Result<WatchId, WatchResponse> {
        let header = ResponseHeader { revision: self.notified_rev };
        let refuse = |id, reason: &str| WatchResponse {
            header,
            watch_id: id,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..WatchResponse::default()
        };
        if self.watchers.len() >= self.config.watchers_max as usize {
            return Err(refuse(-1, TOO_MANY_WATCHERS_REASON));
        }
        let id = if req.watch_id != 0 {
            if req.watch_id < 0 || self.watchers.contains_key(&req.watch_id) {
                return Err(refuse(req.watch_id, DUPLICATE_ID_REASON));
            }
            req.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let start_rev = if req.start_revision > 0 { req.start_revision } else { self.notified_rev + 1 };
        let next_rev = start_rev.min(self.notified_rev + 1);
        let mut watcher = Watcher {
            range: KeyRange::new(&req.key, &req.range_end),
            start_rev,
            next_rev,
            synced: next_rev == self.notified_rev + 1,
            done: false,
            no_put: req.no_put,
            no_delete: req.no_delete,
            prev_kv: req.prev_kv,
            progress_notify: req.progress_notify,
            buffer: VecDeque::new(),
            buffered_events: 0,
        };
        watcher.push(WatchResponse { header, watch_id: id, created: true, ..WatchResponse::default() });
        self.watchers.insert(id, watcher);
        Ok(id)
    }

    /// Removes a watcher, dropping what it had buffered; returns its canceled
    /// response, or `None` if there was no such watcher.
    pub fn cancel(&mut self, id: WatchId) -> Option<WatchResponse> {
        self.watchers.remove(&id)?;
        Some(WatchResponse {
            header: ResponseHeader { revision: self.notified_rev },
            watch_id: id,
            canceled: true,
            ..WatchResponse::default()
        })
    }

    /// Whether a change of `key` notified next would go, with its previous
    /// value, to some watcher (a synced one asking for `prev_kv` whose range
    /// holds `key`; the others catch up from storage and read it there).
    pub fn wants_prev_kv(&self, key: &[u8]) -> bool {
        self.watchers.values().any(|w| w.prev_kv && w.synced && !w.done && w.range.contains(key))
    }

    /// Hands the events of the newly committed revision `rev` to synced
    /// watchers. If revisions were skipped (the hub was not told of them), every
    /// synced watcher falls back to catch-up.
    pub fn notify(&mut self, rev: Revision, events: &[Event]) {
        assert!(rev > self.notified_rev, "revision {rev} notified after {}", self.notified_rev);
        let gap = rev != self.notified_rev + 1;
        for (&watch_id, watcher) in self.watchers.iter_mut() {
            if !watcher.synced || watcher.done {
                continue;
            }
            if gap {
                watcher.synced = false;
                continue;
            }
            assert_eq!(watcher.next_rev, rev, "a synced watcher is at the hub's revision");
            let selected = if rev >= watcher.start_rev { watcher.select(events) } else { Vec::new() };
            if !selected.is_empty() {
                if !watcher.has_room(&self.config, selected.len()) {
                    // Leave this revision to catch-up; never block or grow.
                    watcher.synced = false;
                    continue;
                }
                watcher.push(WatchResponse {
                    header: ResponseHeader { revision: rev },
                    watch_id,
                    events: selected,
                    ..WatchResponse::default()
                });
            }
            watcher.next_rev = rev + 1;
        }
        self.notified_rev = rev;
    }

    /// The store was replaced (snapshot restore) and is now at `current_rev`:
    /// every watcher catches up from its position.
    pub fn reset(&mut self, current_rev: Revision) {
        for watcher in self.watchers.values_mut() {
            watcher.synced = false;
        }
        self.notified_rev = current_rev;
    }

    /// Reads missed revisions from `mvcc` into the buffers of unsynced
    /// watchers, a bounded amount each; cancels watchers that need compacted
    /// revisions.
    pub fn catch_up<S: Storage>(&mut self, mvcc: &Mvcc<S>) {
        assert_eq!(mvcc.current_rev(), self.notified_rev, "the hub must be told of every revision");
        let compact_rev = mvcc.compact_rev();
        let config = self.config;
        let current = self.notified_rev;
        for (&id, watcher) in self.watchers.iter_mut() {
            if watcher.synced || watcher.done {
                continue;
            }
            if watcher.next_rev < compact_rev {
                watcher.done = true;
                // etcd's compacted cancel carries no revision in its header.
                watcher.push(WatchResponse {
                    header: ResponseHeader { revision: 0 },
                    watch_id: id,
                    canceled: true,
                    compact_revision: compact_rev,
                    cancel_reason: COMPACTED_REASON.to_string(),
                    ..WatchResponse::default()
                });
                continue;
            }
            catch_up_one(mvcc, &config, id, watcher);
            if watcher.next_rev > current {
                assert_eq!(watcher.next_rev, current + 1);
                watcher.synced = true;
            }
        }
    }

    /// Queues a progress notification (an empty response carrying the current
    /// revision) for every synced watcher with nothing buffered: those that
    /// asked for them, or all when `all` (etcd's `RequestProgress`).
    pub fn progress(&mut self, all: bool) {
        let header = ResponseHeader { revision: self.notified_rev };
        for (&id, watcher) in self.watchers.iter_mut() {
            if watcher.synced && !watcher.done && watcher.buffer.is_empty() && (all || watcher.progress_notify) {
                watcher.push(WatchResponse { header, watch_id: id, ..WatchResponse::default() });
            }
        }
    }

    /// The next buffered response of any watcher, taking watchers in turn.
    pub fn poll(&mut self) -> Option<WatchResponse> {
        let id = self
            .watchers
            .range(self.poll_from..)
            .chain(self.watchers.range(..self.poll_from))
            .find(|(_, w)| !w.buffer.is_empty())
            .map(|(&id, _)| id)?;
        self.poll_from = id.saturating_add(1);
        self.take(id)
    }

    /// The next buffered response of watcher `id`.
    pub fn take(&mut self, id: WatchId) -> Option<WatchResponse> {
        let watcher = self.watchers.get_mut(&id)?;
        let response = watcher.buffer.pop_front()?;
        watcher.buffered_events -= response.events.len();
        if watcher.done && watcher.buffer.is_empty() {
            self.watchers.remove(&id);
        }
        Some(response)
    }

    /// The number of watchers.
    pub fn len(&self) -> usize {
        self.watchers.len()
    }

    /// True when there are no watchers.
    pub fn is_empty(&self) -> bool {
        self.watchers.is_empty()
    }

    /// Whether watcher `id` is synced, if it exists.
    pub fn is_synced(&self, id: WatchId) -> Option<bool> {
        self.watchers.get(&id).map(|w| w.synced)
    }

    /// Responses buffered for watcher `id`.
    pub fn buffered(&self, id: WatchId) -> usize {
        self.watchers.get(&id).map_or(0, |w| w.buffer.len())
    }

    /// The last revision the hub was told of.
    pub fn revision(&self) -> Revision {
        self.notified_rev
    }
}

/// Reads one watcher's missed revisions from history, whole revisions at a
/// time, until its buffer is full or the per-call budget is spent.
///
/// Like etcd's `syncWatchers`, the missed revisions go out batched: one
/// response carries the events of up to [`CATCH_UP_REVISIONS_MAX`] revisions
/// (and at most `buffer_events_max` events unless a single revision is
/// larger), and its header names the store's current revision, not the
/// events' own.
fn catch_up_one<S: Storage>(mvcc: &Mvcc<S>, config: &WatchConfig, id: WatchId, watcher: &mut Watcher) {
    let current = mvcc.current_rev();
    let events_max = config.buffer_events_max as usize;
    let mut budget = config.catch_up_changes_max as usize;
    // Complete revisions not yet pushed: `watcher.next_rev` up to the one read last.
    let mut batch: Vec<Event> = Vec::new();
    let mut batch_revs = 0usize;
    // The revision being read and its wanted events.
    let mut reading = watcher.next_rev;
    let mut events: Vec<Event> = Vec::new();
    let mut full = false;
    let mut stopped = false;

    // Pushes the batch (revisions before `upto`); false when the buffer is full.
    let push = |watcher: &mut Watcher, batch: &mut Vec<Event>, upto: Revision| -> bool {
        if !batch.is_empty() {
            if !watcher.has_room(config, batch.len()) {
                return false;
            }
            watcher.push(WatchResponse {
                header: ResponseHeader { revision: current },
                watch_id: id,
                events: std::mem::take(batch),
                ..WatchResponse::default()
            });
        }
        watcher.next_rev = upto;
        true
    };
    // Moves the finished revision `rev`'s events into the batch, pushing the
    // batch first when they would not fit; false when the buffer is full.
    let mut finish = |watcher: &mut Watcher, batch: &mut Vec<Event>, rev: Revision, events: &mut Vec<Event>| -> bool {
        if events.is_empty() || rev < watcher.start_rev {
            events.clear();
            return true;
        }
        if !batch.is_empty() && (batch.len() + events.len() > events_max || batch_revs >= CATCH_UP_REVISIONS_MAX) {
            if !push(watcher, batch, rev) {
                return false;
            }
            batch_revs = 0;
        }
        batch.append(events);
        batch_revs += 1;
        true
    };
    mvcc.visit_history(watcher.next_rev, |rev, record| {
        if rev.main != reading {
            if !finish(watcher, &mut batch, reading, &mut events) {
                full = true;
                return false;
            }
            if budget == 0 {
                // Everything before `rev.main` is read; the rest waits for the next call.
                stopped = true;
                reading = rev.main;
                return false;
            }
            reading = rev.main;
        }
        budget = budget.saturating_sub(1);
        let wanted =
            watcher.range.contains(&record.key) && !(if record.tombstone { watcher.no_delete } else { watcher.no_put });
        if wanted {
            events.push(mvcc.event_of(rev, record, watcher.prev_kv));
        }
        true
    });
    if full {
        return;
    }
    if stopped {
        push(watcher, &mut batch, reading);
    } else if reading <= current && finish(watcher, &mut batch, reading, &mut events) {
        // The history ended: every revision up to the current one is read.
        push(watcher, &mut batch, current + 1);
    } else if reading > current {
        push(watcher, &mut batch, current + 1);
    }
}
