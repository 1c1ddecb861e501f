//! The etcd API's [`Backend`] on a replicated member: writes go through Raft
//! (forwarded to the leader by the member), linearizable reads through
//! ReadIndex, serializable reads and watches from this member's state.

use lockstep_api::{Backend, BackendError, HeaderInfo, MemberStatus};
use lockstep_core::kv::{AlarmType, KvCommand, KvQuery, KvResult, WatchCreateRequest, WatchId, WatchResponse};
use lockstep_core::ClientError;
use lockstep_runtime::Member;

/// A [`Backend`] over a running [`Member`].
pub struct MemberBackend {
    member: Member,
}

impl MemberBackend {
    /// The backend of `member`.
    pub fn new(member: Member) -> MemberBackend {
        MemberBackend { member }
    }
}

fn client(e: ClientError) -> BackendError {
    BackendError::Client(e)
}

#[async_trait::async_trait(?Send)]
impl Backend for MemberBackend {
    fn header(&self) -> HeaderInfo {
        let status = self.member.status();
        HeaderInfo { cluster_id: status.cluster_id, member_id: status.id, raft_term: status.term }
    }

    async fn write(&self, command: KvCommand) -> Result<KvResult, BackendError> {
        self.member.kv_write(&command).await.map_err(client)
    }

    async fn read(&self, query: KvQuery, linearizable: bool) -> Result<KvResult, BackendError> {
        self.member.kv_read(&query, linearizable).await.map_err(client)
    }

    async fn leader_request(&self, query: KvQuery) -> Result<KvResult, BackendError> {
        self.member.kv_leader_request(&query).await.map_err(client)
    }

    fn watch_create(&self, request: WatchCreateRequest) -> Result<WatchId, WatchResponse> {
        let created = self.member.with_store(|store| store.watch_create(request));
        // The created response (and catch-up events) are waiting: wake the stream.
        self.member.poke_watchers();
        created
    }

    fn watch_cancel(&self, id: WatchId) -> Option<WatchResponse> {
        self.member.with_store(|store| store.watch_cancel(id))
    }

    fn watch_progress(&self, all: bool) {
        self.member.with_store(|store| store.watch_progress(all));
        self.member.poke_watchers();
    }

    fn watch_take(&self, id: WatchId) -> Option<WatchResponse> {
        self.member.with_store(|store| store.watch_take(id))
    }

    async fn watch_changed(&self) {
        let seen = self.member.applied_generation();
        self.member.applied_since(seen).await
    }

    async fn status(&self) -> Result<MemberStatus, BackendError> {
        let status = self.member.status();
        let alarms = self.member.with_store(|store| store.mvcc().alarms().to_vec());
        Ok(MemberStatus {
            version: lockstep_api::grpc::ETCD_VERSION.to_string(),
            db_size_bytes: status.db_size_bytes as i64,
            db_size_in_use_bytes: status.db_size_bytes as i64,
            leader: status.leader.unwrap_or(0),
            raft_index: status.commit_index,
            raft_term: status.term,
            raft_applied_index: status.applied_index,
            errors: alarms
                .iter()
                .map(|a| {
                    let kind = match a.alarm {
                        AlarmType::NoSpace => "NOSPACE",
                        AlarmType::Corrupt => "CORRUPT",
                        _ => "NONE",
                    };
                    format!("memberID:{} alarm:{kind}", a.member_id)
                })
                .collect(),
            is_learner: status.membership.learners.contains(&status.id),
        })
    }
}
