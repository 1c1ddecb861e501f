//! The etcd API's [`Backend`] on a replicated member: writes go through Raft
//! (forwarded to the leader by the member), linearizable reads through
//! ReadIndex, serializable reads and watches from this member's state.

use std::rc::Rc;

use lockstep_api::{Backend, BackendError, HeaderInfo, MemberInfo, MemberStatus};
use lockstep_core::kv::{
    AlarmType, KvCommand, KvQuery, KvResult, RangeRequest, WatchCreateRequest, WatchId, WatchResponse,
};
use lockstep_core::ClientError;
use lockstep_runtime::Member;

/// A [`Backend`] over a running [`Member`].
pub struct MemberBackend {
    member: Member,
    admin: Rc<crate::http::AdminState>,
}

impl MemberBackend {
    /// The backend of `member`; member addresses come from `admin`.
    pub fn new(member: Member, admin: Rc<crate::http::AdminState>) -> MemberBackend {
        MemberBackend { member, admin }
    }
}

/// A peer address as etcd shows it: a URL.
fn peer_url(address: &str) -> String {
    if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
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

    async fn members(&self, linearizable: bool) -> Result<Vec<MemberInfo>, BackendError> {
        if linearizable {
            // Confirm with a quorum that this member's view is current.
            let probe = KvQuery::Range(RangeRequest { key: vec![0], count_only: true, ..RangeRequest::default() });
            self.member
                .kv_read(&probe, true)
                .await
                .map_err(client)?
                .map_err(|e| BackendError::Unavailable(format!("cannot confirm the membership: {e}")))?;
        }
        let status = self.member.status();
        let addresses = self.admin.addresses();
        let info = |id: u64, is_learner: bool| {
            let a = addresses.get(&id);
            MemberInfo {
                id,
                name: a.map(|a| a.name.clone()).unwrap_or_default(),
                peer_urls: a.map(|a| vec![peer_url(&a.peer)]).unwrap_or_default(),
                client_urls: a.filter(|a| !a.client.is_empty()).map(|a| vec![a.client.clone()]).unwrap_or_default(),
                is_learner,
            }
        };
        let m = &status.membership;
        let mut voters: Vec<u64> = m.voters.iter().chain(&m.outgoing).copied().collect();
        voters.sort_unstable();
        voters.dedup();
        let mut members: Vec<MemberInfo> = voters.into_iter().map(|id| info(id, false)).collect();
        members.extend(m.learners.iter().map(|id| info(*id, true)));
        Ok(members)
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
