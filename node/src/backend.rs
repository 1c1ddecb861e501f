//! The etcd API's [`Backend`] on a replicated member: writes go through Raft
//! (forwarded to the leader by the member), linearizable reads through
//! ReadIndex, serializable reads and watches from this member's state.

use std::rc::Rc;

use hyper::Method;
use lockstep_api::{Backend, BackendError, EtcdError, HeaderInfo, KvHash, MemberInfo, MemberStatus};
use lockstep_core::kv::{
    AlarmType, KvCommand, KvQuery, KvResult, RangeRequest, WatchCreateRequest, WatchId, WatchResponse,
};
use lockstep_core::ClientError;
use lockstep_core::{Request as NodeRequest, Response as NodeResponse, Role};
use lockstep_runtime::Member;
use serde_json::Value;

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

/// A peer address as etcd shows it: a URL (`https://` with peer TLS).
fn peer_url(address: &str, tls: bool) -> String {
    if address.contains("://") {
        address.to_string()
    } else if tls {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

fn client(e: ClientError) -> BackendError {
    BackendError::Client(e)
}

/// A peer URL as the admin API keeps it: `host:port`.
fn peer_address(url: &str) -> Result<String, BackendError> {
    let address = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).unwrap_or(url);
    let address = address.trim_end_matches('/');
    let valid = !address.is_empty()
        && !address.contains("://")
        && address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        Ok(address.to_string())
    } else {
        Err(BackendError::Etcd(EtcdError::MemberBadUrls))
    }
}

/// The one peer address of a membership request (lockstep members have one).
fn one_peer_address(urls: &[String]) -> Result<String, BackendError> {
    match urls {
        [url] => peer_address(url),
        _ => Err(BackendError::Etcd(EtcdError::MemberBadUrls)),
    }
}

/// A fresh member id: random, never 0.
fn fresh_member_id(taken: &[u64]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(taken.len() as u64);
        let id = hasher.finish() >> 1;
        if id != 0 && !taken.contains(&id) {
            return id;
        }
    }
}

impl MemberBackend {
    /// Runs an admin membership request on the leader: here when this member
    /// leads, else over HTTP at the leader's admin URL. Returns the status and
    /// JSON body; refusals stay for the caller to map.
    async fn on_leader(&self, method: Method, path: String, body: Option<Value>) -> Result<(u16, Value), BackendError> {
        let view = self.member.raft_view();
        if view.role == Role::Leader {
            let (path, query) = path.split_once('?').unwrap_or((path.as_str(), ""));
            let bytes = body.map(|b| b.to_string()).unwrap_or_default();
            return Ok(crate::http::admin_local(&self.admin, &method, path, query, bytes.as_bytes()).await);
        }
        let Some(leader) = view.leader else {
            return Err(client(ClientError::NotLeader { leader: None }));
        };
        let url = self.admin.addresses().get(&leader).map(|a| a.admin.clone()).filter(|a| !a.is_empty());
        let Some(url) = url else {
            return Err(BackendError::Unavailable(format!(
                "etcdserver: the leader's ({leader:x}) admin address is unknown to this member; ask the leader"
            )));
        };
        let reply = glommio::executor()
            .spawn_blocking(move || crate::admin_client::call(method.as_str(), &url, &path, body.as_ref()))
            .await
            .map_err(|e| BackendError::Unavailable(format!("forwarding to the leader failed: {e}")))?;
        Ok((reply.status, reply.body))
    }

    /// Maps an admin answer of a membership change to the API's outcome.
    fn membership_outcome(&self, answer: (u16, Value), refusal: &[(u16, EtcdError)]) -> Result<(), BackendError> {
        let (code, body) = answer;
        if code == 200 {
            return Ok(());
        }
        if let Some((_, e)) = refusal.iter().find(|(c, _)| *c == code) {
            return Err(BackendError::Etcd(*e));
        }
        let text = body["error"].as_str().unwrap_or("").to_string();
        Err(match code {
            421 => client(ClientError::NotLeader { leader: body["leader"].as_u64() }),
            409 if text.contains("another membership change") => client(ClientError::Busy),
            400 => client(ClientError::Invalid(text)),
            _ => BackendError::Unavailable(format!("etcdserver: {text}")),
        })
    }

    /// The members after a change, as of a linearizable read (this member has
    /// then seen the change the leader made).
    async fn members_after(&self) -> Result<Vec<MemberInfo>, BackendError> {
        self.members(true).await
    }
}

#[async_trait::async_trait(?Send)]
impl Backend for MemberBackend {
    fn header(&self) -> HeaderInfo {
        let view = self.member.raft_view();
        HeaderInfo { cluster_id: view.cluster_id, member_id: view.id, raft_term: view.term }
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

    fn auth(&self) -> std::sync::Arc<lockstep_core::kv::AuthStore> {
        self.member.with_store(|store| store.auth())
    }

    fn take_auth_events(&self) -> Vec<lockstep_core::kv::AuthEvent> {
        self.member.with_store(|store| store.take_auth_events())
    }

    /// bcrypt runs on glommio's blocking thread pool: on the executor it
    /// would stall Raft, the WAL and every connection of this member for
    /// the whole hash (tens of milliseconds at cost 10).
    async fn offload(&self, job: Box<dyn FnOnce() + Send>) {
        glommio::executor().spawn_blocking(job).await;
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
            let mut name = a.map(|a| a.name.clone()).unwrap_or_default();
            // A member registered with MemberAdd has no name until it joins
            // (etcd's "unstarted"); only the leader hears the name it joins
            // with, so elsewhere a live peer connection shows it started.
            let connected = id == status.id || status.peers.get(&id).is_some_and(|p| p.connected);
            if name.is_empty() && connected {
                name = format!("member-{id}");
            }
            MemberInfo {
                id,
                name,
                peer_urls: a.map(|a| vec![peer_url(&a.peer, self.admin.peer_tls())]).unwrap_or_default(),
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

    async fn member_add(
        &self,
        peer_urls: Vec<String>,
        is_learner: bool,
    ) -> Result<(MemberInfo, Vec<MemberInfo>), BackendError> {
        let peer = one_peer_address(&peer_urls)?;
        let known = self.admin.addresses();
        if known.values().any(|a| a.peer == peer) {
            return Err(BackendError::Etcd(EtcdError::PeerUrlExists));
        }
        let status = self.member.status();
        let m = &status.membership;
        let taken: Vec<u64> =
            m.voters.iter().chain(&m.learners).chain(&m.outgoing).chain(known.keys()).copied().collect();
        let id = fresh_member_id(&taken);
        let body = serde_json::json!({"id": id, "peer": peer, "name": "", "learner": is_learner});
        let answer = self.on_leader(Method::POST, "/cluster/members".into(), Some(body)).await?;
        self.membership_outcome(answer, &[(409, EtcdError::PeerUrlExists)])?;
        // This member learns the address now, the others from its handshake.
        self.admin.learn(std::collections::BTreeMap::from([(
            id,
            crate::admin::MemberAddresses {
                name: String::new(),
                peer: peer.clone(),
                client: String::new(),
                admin: String::new(),
            },
        )]));
        let member = MemberInfo {
            id,
            name: String::new(),
            peer_urls: vec![peer_url(&peer, self.admin.peer_tls())],
            client_urls: Vec::new(),
            is_learner,
        };
        Ok((member, self.members_after().await?))
    }

    async fn member_remove(&self, id: u64) -> Result<Vec<MemberInfo>, BackendError> {
        let answer = self.on_leader(Method::DELETE, format!("/cluster/members/{id}?quorum=true"), None).await?;
        self.membership_outcome(
            answer,
            &[(404, EtcdError::MemberNotFound), (412, EtcdError::NotEnoughStartedMembers)],
        )?;
        self.admin.forget(id);
        self.member.remove_peer(id);
        self.members_after().await
    }

    async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> Result<Vec<MemberInfo>, BackendError> {
        let peer = one_peer_address(&peer_urls)?;
        let status = self.member.status();
        if !status.membership.voters.contains(&id) && !status.membership.learners.contains(&id) {
            return Err(BackendError::Etcd(EtcdError::MemberNotFound));
        }
        let body = serde_json::json!({"peer": peer});
        let path = format!("/cluster/members/{id}");
        let answer = crate::http::admin_local(&self.admin, &Method::PUT, &path, "", body.to_string().as_bytes()).await;
        self.membership_outcome(answer, &[(404, EtcdError::MemberNotFound)])?;
        // Tell every other member we know the admin URL of (best effort: a
        // member that misses it learns the address from the peer's handshake).
        let others: Vec<String> = self
            .admin
            .addresses()
            .iter()
            .filter(|(other, a)| **other != status.id && **other != id && !a.admin.is_empty())
            .map(|(_, a)| a.admin.clone())
            .collect();
        let _ = glommio::executor()
            .spawn_blocking(move || {
                for admin in others {
                    if let Err(e) = crate::admin_client::call("PUT", &admin, &path, Some(&body)) {
                        tracing::warn!(member = id, "could not tell {admin} the new peer address: {e}");
                    }
                }
            })
            .await;
        self.members_after().await
    }

    async fn member_promote(&self, id: u64) -> Result<Vec<MemberInfo>, BackendError> {
        let status = self.member.status();
        if status.membership.voters.contains(&id) {
            return Err(BackendError::Etcd(EtcdError::MemberNotLearner));
        }
        if !status.membership.learners.contains(&id) {
            return Err(BackendError::Etcd(EtcdError::MemberNotFound));
        }
        let answer = self.on_leader(Method::POST, format!("/cluster/members/{id}/promote"), None).await?;
        self.membership_outcome(answer, &[(404, EtcdError::MemberNotFound), (412, EtcdError::LearnerNotReady)])?;
        self.members_after().await
    }

    async fn snapshot(&self) -> Result<Vec<u8>, BackendError> {
        Ok(crate::http::snapshot_file(&self.member))
    }

    async fn hash(&self) -> Result<u32, BackendError> {
        let pairs = self.member.with_store(|store| store.mvcc().dump());
        let mut crc = 0u32;
        for (key, value) in pairs {
            crc = crc32c::crc32c_append(crc, &(key.len() as u64).to_le_bytes());
            crc = crc32c::crc32c_append(crc, &key);
            crc = crc32c::crc32c_append(crc, &(value.len() as u64).to_le_bytes());
            crc = crc32c::crc32c_append(crc, &value);
        }
        Ok(crc)
    }

    async fn hash_kv(&self, revision: i64) -> Result<KvHash, BackendError> {
        self.member.with_store(|store| {
            let mvcc = store.mvcc();
            let (current, compacted) = (mvcc.current_rev(), mvcc.compact_rev());
            let upto = if revision > 0 { revision } else { current };
            if upto > current {
                return Err(BackendError::Etcd(EtcdError::FutureRevision));
            }
            if upto < compacted {
                return Err(BackendError::Etcd(EtcdError::Compacted));
            }
            Ok(KvHash { hash: kv_hash(mvcc, compacted, upto), compact_revision: compacted, hash_revision: upto })
        })
    }

    async fn move_leader(&self, target: u64) -> Result<(), BackendError> {
        let status = self.member.status();
        if status.role != Role::Leader {
            return Err(BackendError::Etcd(EtcdError::NotLeader));
        }
        if !status.membership.voters.contains(&target) {
            return Err(BackendError::Etcd(EtcdError::BadLeaderTransferee));
        }
        if target == status.id {
            return Ok(());
        }
        match self.member.request_local(NodeRequest::TransferLeader { to: target }).await {
            Ok(NodeResponse::Transferred { .. }) => Ok(()),
            Ok(other) => Err(BackendError::Unavailable(format!("lockstep: unexpected answer {other:?}"))),
            Err(ClientError::Invalid(_)) => Err(BackendError::Etcd(EtcdError::BadLeaderTransferee)),
            Err(e) => Err(client(e)),
        }
    }
}

/// etcd's `HashKV`: a CRC-32C over every revision record from the compacted
/// revision up to `upto` (revision, key and the stored fields), so members
/// that applied the same log agree byte for byte.
fn kv_hash<S: lockstep_core::kv::Storage>(
    mvcc: &lockstep_core::kv::Mvcc<S>,
    compacted: lockstep_core::kv::Revision,
    upto: lockstep_core::kv::Revision,
) -> u32 {
    let mut crc = 0u32;
    mvcc.visit_history(compacted, |rev, record| {
        if rev.main > upto {
            return false;
        }
        for number in [rev.main, rev.sub, record.create_revision, record.version, record.lease] {
            crc = crc32c::crc32c_append(crc, &number.to_le_bytes());
        }
        crc = crc32c::crc32c_append(crc, &[u8::from(record.tombstone)]);
        crc = crc32c::crc32c_append(crc, &(record.key.len() as u64).to_le_bytes());
        crc = crc32c::crc32c_append(crc, &record.key);
        crc = crc32c::crc32c_append(crc, &record.value);
        true
    });
    crc
}
