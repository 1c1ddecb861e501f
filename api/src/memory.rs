//! [`MemoryBackend`]: the etcd API over one in-memory [`KvStore`], without
//! Raft: a single-process etcd-compatible server, and the backend of this
//! crate's tests.
//!
//! Writes are applied at once with increasing log indexes; every read is
//! served from the one store (linearizable trivially); this process acts as
//! the leader for leases. Lease expiry needs a clock: every call first revokes
//! the leases whose TTL ran out (measured from the backend's creation with
//! [`std::time::Instant`]), and an embedder that wants expiry without traffic
//! calls [`MemoryBackend::tick`] when [`MemoryBackend::next_deadline`] says.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use lockstep_core::kv::{
    decode_reply, AuthEvent, AuthStore, KvCommand, KvConfig, KvError, KvQuery, KvResult, KvStore, MemStorage,
    WatchCreateRequest, WatchId, WatchResponse,
};
use lockstep_core::{LogIndex, Millis, Payload, StateMachine};

use crate::backend::{Backend, BackendError, HeaderInfo, MemberInfo, MemberStatus};

/// Expired leases revoked per call of [`MemoryBackend::tick`].
const EXPIRED_PER_TICK_MAX: usize = 64;

/// A [`Backend`] over one in-memory store. See the module doc.
pub struct MemoryBackend {
    info: HeaderInfo,
    member: MemberInfo,
    store: RefCell<KvStore<MemStorage>>,
    applied: Cell<LogIndex>,
    epoch: Instant,
    /// Bumped on every change a watcher may care about.
    generation: Cell<u64>,
    /// Tasks waiting in [`Backend::watch_changed`].
    waiters: RefCell<Vec<Waker>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("info", &self.info)
            .field("applied", &self.applied.get())
            .field("revision", &self.store.borrow().current_revision())
            .finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// An empty store answering with `info` in its headers.
    pub fn new(info: HeaderInfo, config: KvConfig) -> MemoryBackend {
        let mut store = KvStore::open(config, MemStorage::new()).expect("empty in-memory storage opens");
        let epoch = Instant::now();
        store.on_leadership(0, true);
        MemoryBackend {
            info,
            member: MemberInfo { id: info.member_id, name: "lockstep".into(), ..MemberInfo::default() },
            store: RefCell::new(store),
            applied: Cell::new(0),
            epoch,
            generation: Cell::new(0),
            waiters: RefCell::new(Vec::new()),
        }
    }

    /// Sets what `Cluster/MemberList` reports of this member (by default: its
    /// id, named "lockstep", without URLs).
    pub fn with_member(mut self, member: MemberInfo) -> MemoryBackend {
        self.member = member;
        self
    }

    fn now(&self) -> Millis {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Applies an encoded command as the next log entry, through the state machine's
    /// log path (as a member would: it also keeps the lease timer informed).
    fn apply(&self, command: Vec<u8>) -> Result<KvResult, BackendError> {
        let index = self.applied.get() + 1;
        self.applied.set(index);
        let reply = self.store.borrow_mut().apply(index, &Payload::Command(command));
        self.changed();
        decode_reply(&reply).map_err(|why| BackendError::Unavailable(format!("lockstep: bad reply: {why}")))
    }

    /// Revokes leases whose time ran out. Call it when
    /// [`MemoryBackend::next_deadline`] has passed; every request does so too.
    pub fn tick(&self) {
        let now = self.now();
        let expired = self.store.borrow_mut().leader_proposals(now, EXPIRED_PER_TICK_MAX);
        for command in expired {
            // A revoke of a lease revoked meanwhile fails harmlessly.
            let _ = self.apply(command);
        }
    }

    /// How long until the next lease expires, if one is pending.
    pub fn next_deadline(&self) -> Option<Duration> {
        let deadline = self.store.borrow().next_deadline()?;
        Some(Duration::from_millis(deadline.saturating_sub(self.now())))
    }

    /// Wakes [`Backend::watch_changed`] waiters.
    fn changed(&self) {
        self.generation.set(self.generation.get() + 1);
        // Out of the cell first: a waker may run code that waits again.
        let waiters = std::mem::take(&mut *self.waiters.borrow_mut());
        for waker in waiters {
            waker.wake();
        }
    }

    /// Reads the store directly.
    pub fn with_store<R>(&self, f: impl FnOnce(&KvStore<MemStorage>) -> R) -> R {
        f(&self.store.borrow())
    }
}

#[async_trait::async_trait(?Send)]
impl Backend for MemoryBackend {
    fn header(&self) -> HeaderInfo {
        self.info
    }

    fn auth(&self) -> std::sync::Arc<AuthStore> {
        self.store.borrow().auth()
    }

    fn take_auth_events(&self) -> Vec<AuthEvent> {
        self.store.borrow_mut().take_auth_events()
    }

    /// The store's state-machine snapshot (no file header: this backend has
    /// no data directory to restore into).
    async fn snapshot(&self) -> Result<Vec<u8>, BackendError> {
        Ok(StateMachine::snapshot(&*self.store.borrow()))
    }

    async fn write(&self, command: KvCommand) -> Result<KvResult, BackendError> {
        self.tick();
        let command = command.encode();
        if command.len() as u64 > self.store.borrow().config().request_bytes_max {
            return Ok(Err(KvError::RequestTooLarge));
        }
        self.apply(command)
    }

    async fn read(&self, query: KvQuery, _linearizable: bool) -> Result<KvResult, BackendError> {
        self.tick();
        Ok(self.store.borrow().read(&query))
    }

    async fn leader_request(&self, query: KvQuery) -> Result<KvResult, BackendError> {
        self.tick();
        let now = self.now();
        let reply = self.store.borrow_mut().leader_request(now, &query.encode());
        decode_reply(&reply).map_err(|why| BackendError::Unavailable(format!("lockstep: bad reply: {why}")))
    }

    fn watch_create(&self, request: WatchCreateRequest) -> Result<WatchId, WatchResponse> {
        let created = self.store.borrow_mut().watch_create(request);
        self.changed();
        created
    }

    fn watch_cancel(&self, id: WatchId) -> Option<WatchResponse> {
        self.store.borrow_mut().watch_cancel(id)
    }

    fn watch_progress(&self, all: bool) {
        self.store.borrow_mut().watch_progress(all);
        self.changed();
    }

    fn watch_take(&self, id: WatchId) -> Option<WatchResponse> {
        self.store.borrow_mut().watch_take(id)
    }

    async fn watch_changed(&self) {
        let start = self.generation.get();
        poll_fn(|cx| {
            if self.generation.get() != start {
                return Poll::Ready(());
            }
            let mut waiters = self.waiters.borrow_mut();
            if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
                waiters.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
    }

    async fn members(&self, _linearizable: bool) -> Result<Vec<MemberInfo>, BackendError> {
        Ok(vec![self.member.clone()])
    }

    async fn status(&self) -> Result<MemberStatus, BackendError> {
        let store = self.store.borrow();
        let size = store.mvcc().size_bytes() as i64;
        let applied = self.applied.get();
        Ok(MemberStatus {
            version: crate::grpc::ETCD_VERSION.to_string(),
            db_size_bytes: size,
            db_size_in_use_bytes: size,
            leader: self.info.member_id,
            raft_index: applied,
            raft_term: self.info.raft_term,
            raft_applied_index: applied,
            errors: Vec::new(),
            is_learner: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;
    use lockstep_core::kv::{KvResponse, LeaseGrantRequest, PutRequest, RangeRequest};

    use super::*;
    use std::rc::Rc;

    #[test]
    fn leases_expire_on_the_next_request() {
        let config = KvConfig { lease_ttl_min_s: 1, ..KvConfig::default() };
        let backend = MemoryBackend::new(HeaderInfo::default(), config);
        let grant = block_on(backend.write(KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 1, id: 7 })));
        assert!(matches!(grant, Ok(Ok(KvResponse::LeaseGrant(_)))), "{grant:?}");
        let put = PutRequest { key: b"k".to_vec(), value: b"v".to_vec(), lease: 7, ..PutRequest::default() };
        block_on(backend.write(KvCommand::Put(put))).unwrap().unwrap();
        assert!(backend.next_deadline().is_some());
        let count = || {
            let range = RangeRequest { key: b"k".to_vec(), ..RangeRequest::default() };
            match block_on(backend.read(KvQuery::Range(range), true)).unwrap().unwrap() {
                KvResponse::Range(r) => r.count,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(count(), 1);
        std::thread::sleep(Duration::from_millis(1300));
        assert_eq!(count(), 0);
    }

    #[test]
    fn watch_changed_wakes_on_writes() {
        let backend = Rc::new(MemoryBackend::new(HeaderInfo::default(), KvConfig::default()));
        let waiting = backend.watch_changed();
        let put = PutRequest { key: b"k".to_vec(), ..PutRequest::default() };
        block_on(async {
            let wait = async {
                waiting.await;
                true
            };
            let write = async {
                block_on(backend.write(KvCommand::Put(put))).unwrap().unwrap();
                futures_lite::future::pending::<bool>().await
            };
            futures_lite::FutureExt::or(wait, write).await
        });
    }
}
