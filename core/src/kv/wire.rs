//! The binary encoding of KV commands (log entries), queries and results.
//!
//! One format byte ([`KV_FORMAT`]) followed by an rkyv body. Nested txns are
//! flattened into a list of txn nodes in depth-first order, each nested txn op
//! naming a later node, so that decoding hostile bytes never recurses without
//! bound: the tree is rebuilt with every node used exactly once and at most
//! [`WIRE_TXN_DEPTH_MAX`] levels.

use rkyv::rancor;
use rkyv::{Archive, Deserialize, Serialize};

use super::auth::AuthCommand;
use super::errors::KvError;
use super::layout::{aligned, to_bytes};
use super::request::{
    AlarmRequest, AlarmResponse, AuthResponse, CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest,
    DeleteRangeResponse, KvCommand, KvQuery, KvResponse, KvResult, LeaseCheckpointRequest, LeaseGrantRequest,
    LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeRequest,
    LeaseRevokeResponse, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
};

/// The first byte of every encoding; bump it when a KV wire type changes.
pub const KV_FORMAT: u8 = 1;

/// The deepest txn nesting the decoder rebuilds.
pub const WIRE_TXN_DEPTH_MAX: u32 = 64;

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum WireOp {
    Range(RangeRequest),
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(u32),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct WireTxn {
    compare: Vec<Compare>,
    success: Vec<WireOp>,
    failure: Vec<WireOp>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum WireCommand {
    Put(PutRequest),
    DeleteRange(DeleteRangeRequest),
    Txn(Vec<WireTxn>),
    Compaction(CompactionRequest),
    LeaseGrant(LeaseGrantRequest),
    LeaseRevoke(LeaseRevokeRequest),
    LeaseCheckpoint(LeaseCheckpointRequest),
    Alarm(AlarmRequest),
    Auth(AuthCommand),
    AsUser { user: String, auth_revision: u64, inner: Vec<u8> },
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum WireQuery {
    Range(RangeRequest),
    Txn(Vec<WireTxn>),
    LeaseTimeToLive(LeaseTimeToLiveRequest),
    LeaseLeases,
    Alarms,
    LeaseKeepAlive(LeaseKeepAliveRequest),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum WireResponseOp {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(u32),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
struct WireTxnResponse {
    header: ResponseHeader,
    succeeded: bool,
    responses: Vec<WireResponseOp>,
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum WireResponse {
    Range(RangeResponse),
    Put(PutResponse),
    DeleteRange(DeleteRangeResponse),
    Txn(Vec<WireTxnResponse>),
    Compaction(CompactionResponse),
    LeaseGrant(LeaseGrantResponse),
    LeaseRevoke(LeaseRevokeResponse),
    LeaseCheckpoint(ResponseHeader),
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    LeaseLeases(LeaseLeasesResponse),
    Noop,
    Alarm(AlarmResponse),
    LeaseKeepAlive(LeaseKeepAliveResponse),
    Auth(AuthResponse),
}

#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
enum WireResult {
    Ok(WireResponse),
    Err(KvError),
}

fn flatten_txn(txn: &TxnRequest, nodes: &mut Vec<WireTxn>) -> u32 {
    let at = nodes.len();
    nodes.push(WireTxn { compare: txn.compare.clone(), success: Vec::new(), failure: Vec::new() });
    let branch = |ops: &[RequestOp], nodes: &mut Vec<WireTxn>| -> Vec<WireOp> {
        ops.iter()
            .map(|op| match op {
                RequestOp::Range(r) => WireOp::Range(r.clone()),
                RequestOp::Put(p) => WireOp::Put(p.clone()),
                RequestOp::DeleteRange(d) => WireOp::DeleteRange(d.clone()),
                RequestOp::Txn(t) => WireOp::Txn(flatten_txn(t, nodes)),
            })
            .collect()
    };
    let success = branch(&txn.success, nodes);
    let failure = branch(&txn.failure, nodes);
    nodes[at].success = success;
    nodes[at].failure = failure;
    u32::try_from(at).expect("txn node count fits in u32")
}

fn flatten_txn_response(txn: &TxnResponse, nodes: &mut Vec<WireTxnResponse>) -> u32 {
    let at = nodes.len();
    nodes.push(WireTxnResponse { header: txn.header, succeeded: txn.succeeded, responses: Vec::new() });
    let responses = txn
        .responses
        .iter()
        .map(|op| match op {
            ResponseOp::Range(r) => WireResponseOp::Range(r.clone()),
            ResponseOp::Put(p) => WireResponseOp::Put(p.clone()),
            ResponseOp::DeleteRange(d) => WireResponseOp::DeleteRange(d.clone()),
            ResponseOp::Txn(t) => WireResponseOp::Txn(flatten_txn_response(t, nodes)),
        })
        .collect();
    nodes[at].responses = responses;
    u32::try_from(at).expect("txn node count fits in u32")
}

/// Checks that the nested-txn references of `refs_of(node)` form a tree rooted at
/// node 0 in which each child comes after its parent and is used exactly once.
fn check_tree(len: usize, refs: impl Iterator<Item = (usize, u32)>) -> Result<(), String> {
    if len == 0 {
        return Err("txn without nodes".into());
    }
    let mut used = vec![false; len];
    used[0] = true;
    for (parent, child) in refs {
        let child = child as usize;
        if child <= parent || child >= len || used[child] {
            return Err(format!("txn node {parent} names node {child} out of order or twice"));
        }
        used[child] = true;
    }
    if used.iter().any(|u| !u) {
        return Err("unused txn nodes".into());
    }
    Ok(())
}

fn unflatten_txn(nodes: Vec<WireTxn>) -> Result<TxnRequest, String> {
    let refs = nodes.iter().enumerate().flat_map(|(i, n)| {
        n.success.iter().chain(&n.failure).filter_map(move |op| match op {
            WireOp::Txn(c) => Some((i, *c)),
            _ => None,
        })
    });
    check_tree(nodes.len(), refs)?;
    let mut slots: Vec<Option<WireTxn>> = nodes.into_iter().map(Some).collect();
    build_txn(&mut slots, 0, 1)
}

fn build_txn(slots: &mut [Option<WireTxn>], at: usize, depth: u32) -> Result<TxnRequest, String> {
    if depth > WIRE_TXN_DEPTH_MAX {
        return Err(format!("txn nested deeper than {WIRE_TXN_DEPTH_MAX} levels"));
    }
    let node = slots.get_mut(at).and_then(Option::take).ok_or("txn node used twice")?;
    let branch = |ops: Vec<WireOp>, slots: &mut [Option<WireTxn>]| -> Result<Vec<RequestOp>, String> {
        ops.into_iter()
            .map(|op| {
                Ok(match op {
                    WireOp::Range(r) => RequestOp::Range(r),
                    WireOp::Put(p) => RequestOp::Put(p),
                    WireOp::DeleteRange(d) => RequestOp::DeleteRange(d),
                    WireOp::Txn(c) => RequestOp::Txn(build_txn(slots, c as usize, depth + 1)?),
                })
            })
            .collect()
    };
    let success = branch(node.success, slots)?;
    let failure = branch(node.failure, slots)?;
    Ok(TxnRequest { compare: node.compare, success, failure })
}

fn unflatten_txn_response(nodes: Vec<WireTxnResponse>) -> Result<TxnResponse, String> {
    let refs = nodes.iter().enumerate().flat_map(|(i, n)| {
        n.responses.iter().filter_map(move |op| match op {
            WireResponseOp::Txn(c) => Some((i, *c)),
            _ => None,
        })
    });
    check_tree(nodes.len(), refs)?;
    let mut slots: Vec<Option<WireTxnResponse>> = nodes.into_iter().map(Some).collect();
    build_txn_response(&mut slots, 0, 1)
}

fn build_txn_response(slots: &mut [Option<WireTxnResponse>], at: usize, depth: u32) -> Result<TxnResponse, String> {
    if depth > WIRE_TXN_DEPTH_MAX {
        return Err(format!("txn nested deeper than {WIRE_TXN_DEPTH_MAX} levels"));
    }
    let node = slots.get_mut(at).and_then(Option::take).ok_or("txn node used twice")?;
    let responses = node
        .responses
        .into_iter()
        .map(|op| {
            Ok(match op {
                WireResponseOp::Range(r) => ResponseOp::Range(r),
                WireResponseOp::Put(p) => ResponseOp::Put(p),
                WireResponseOp::DeleteRange(d) => ResponseOp::DeleteRange(d),
                WireResponseOp::Txn(c) => ResponseOp::Txn(build_txn_response(slots, c as usize, depth + 1)?),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(TxnResponse { header: node.header, succeeded: node.succeeded, responses })
}

fn frame(body: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(KV_FORMAT);
    out.extend_from_slice(&body);
    out
}

fn unframe(bytes: &[u8]) -> Result<&[u8], String> {
    match bytes.split_first() {
        Some((&KV_FORMAT, body)) => Ok(body),
        Some((v, _)) => Err(format!("unknown KV format {v}")),
        None => Err("empty KV message".into()),
    }
}

impl KvCommand {
    /// Encodes for the log.
    pub fn encode(&self) -> Vec<u8> {
        let wire = match self {
            KvCommand::Put(p) => WireCommand::Put(p.clone()),
            KvCommand::DeleteRange(d) => WireCommand::DeleteRange(d.clone()),
            KvCommand::Txn(t) => {
                let mut nodes = Vec::new();
                flatten_txn(t, &mut nodes);
                WireCommand::Txn(nodes)
            }
            KvCommand::Compaction(c) => WireCommand::Compaction(c.clone()),
            KvCommand::LeaseGrant(g) => WireCommand::LeaseGrant(g.clone()),
            KvCommand::LeaseRevoke(r) => WireCommand::LeaseRevoke(r.clone()),
            KvCommand::LeaseCheckpoint(c) => WireCommand::LeaseCheckpoint(c.clone()),
            KvCommand::Alarm(a) => WireCommand::Alarm(*a),
            KvCommand::Auth(a) => WireCommand::Auth(a.clone()),
            KvCommand::AsUser(u) => {
                assert!(!matches!(*u.command, KvCommand::AsUser(_)), "nested AsUser command");
                WireCommand::AsUser { user: u.user.clone(), auth_revision: u.auth_revision, inner: u.command.encode() }
            }
        };
        frame(to_bytes(&wire))
    }

    /// Decodes [`KvCommand::encode`]'s bytes; hostile bytes give an error.
    pub fn decode(bytes: &[u8]) -> Result<KvCommand, String> {
        let wire =
            rkyv::from_bytes::<WireCommand, rancor::Error>(&aligned(unframe(bytes)?)).map_err(|e| e.to_string())?;
        Ok(match wire {
            WireCommand::Put(p) => KvCommand::Put(p),
            WireCommand::DeleteRange(d) => KvCommand::DeleteRange(d),
            WireCommand::Txn(nodes) => KvCommand::Txn(unflatten_txn(nodes)?),
            WireCommand::Compaction(c) => KvCommand::Compaction(c),
            WireCommand::LeaseGrant(g) => KvCommand::LeaseGrant(g),
            WireCommand::LeaseRevoke(r) => KvCommand::LeaseRevoke(r),
            WireCommand::LeaseCheckpoint(c) => KvCommand::LeaseCheckpoint(c),
            WireCommand::Alarm(a) => KvCommand::Alarm(a),
            WireCommand::Auth(a) => KvCommand::Auth(a),
            WireCommand::AsUser { user, auth_revision, inner } => match KvCommand::decode(&inner)? {
                KvCommand::AsUser(_) => return Err("nested AsUser command".into()),
                command => {
                    KvCommand::AsUser(super::request::UserCommand { user, auth_revision, command: Box::new(command) })
                }
            },
        })
    }
}

impl KvQuery {
    /// Encodes for `StateMachine::query`.
    pub fn encode(&self) -> Vec<u8> {
        let wire = match self {
            KvQuery::Range(r) => WireQuery::Range(r.clone()),
            KvQuery::Txn(t) => {
                let mut nodes = Vec::new();
                flatten_txn(t, &mut nodes);
                WireQuery::Txn(nodes)
            }
            KvQuery::LeaseTimeToLive(t) => WireQuery::LeaseTimeToLive(t.clone()),
            KvQuery::LeaseLeases => WireQuery::LeaseLeases,
            KvQuery::Alarms => WireQuery::Alarms,
            KvQuery::LeaseKeepAlive(k) => WireQuery::LeaseKeepAlive(*k),
        };
        frame(to_bytes(&wire))
    }

    /// Decodes [`KvQuery::encode`]'s bytes; hostile bytes give an error.
    pub fn decode(bytes: &[u8]) -> Result<KvQuery, String> {
        let wire =
            rkyv::from_bytes::<WireQuery, rancor::Error>(&aligned(unframe(bytes)?)).map_err(|e| e.to_string())?;
        Ok(match wire {
            WireQuery::Range(r) => KvQuery::Range(r),
            WireQuery::Txn(nodes) => KvQuery::Txn(unflatten_txn(nodes)?),
            WireQuery::LeaseTimeToLive(t) => KvQuery::LeaseTimeToLive(t),
            WireQuery::LeaseLeases => KvQuery::LeaseLeases,
            WireQuery::Alarms => KvQuery::Alarms,
            WireQuery::LeaseKeepAlive(k) => KvQuery::LeaseKeepAlive(k),
        })
    }
}

/// Encodes a command's or query's result for the client.
pub fn encode_result(result: &KvResult) -> Vec<u8> {
    let wire = match result {
        Err(e) => WireResult::Err(e.clone()),
        Ok(response) => WireResult::Ok(match response {
            KvResponse::Range(r) => WireResponse::Range(r.clone()),
            KvResponse::Put(p) => WireResponse::Put(p.clone()),
            KvResponse::DeleteRange(d) => WireResponse::DeleteRange(d.clone()),
            KvResponse::Txn(t) => {
                let mut nodes = Vec::new();
                flatten_txn_response(t, &mut nodes);
                WireResponse::Txn(nodes)
            }
            KvResponse::Compaction(c) => WireResponse::Compaction(c.clone()),
            KvResponse::LeaseGrant(g) => WireResponse::LeaseGrant(g.clone()),
            KvResponse::LeaseRevoke(r) => WireResponse::LeaseRevoke(r.clone()),
            KvResponse::LeaseCheckpoint(h) => WireResponse::LeaseCheckpoint(*h),
            KvResponse::LeaseTimeToLive(t) => WireResponse::LeaseTimeToLive(t.clone()),
            KvResponse::LeaseLeases(l) => WireResponse::LeaseLeases(l.clone()),
            KvResponse::Noop => WireResponse::Noop,
            KvResponse::Alarm(a) => WireResponse::Alarm(a.clone()),
            KvResponse::LeaseKeepAlive(k) => WireResponse::LeaseKeepAlive(k.clone()),
            KvResponse::Auth(a) => WireResponse::Auth(a.clone()),
        }),
    };
    frame(to_bytes(&wire))
}

/// Decodes [`encode_result`]'s bytes.
pub fn decode_result(bytes: &[u8]) -> Result<KvResult, String> {
    let wire = rkyv::from_bytes::<WireResult, rancor::Error>(&aligned(unframe(bytes)?)).map_err(|e| e.to_string())?;
    Ok(match wire {
        WireResult::Err(e) => Err(e),
        WireResult::Ok(response) => Ok(match response {
            WireResponse::Range(r) => KvResponse::Range(r),
            WireResponse::Put(p) => KvResponse::Put(p),
            WireResponse::DeleteRange(d) => KvResponse::DeleteRange(d),
            WireResponse::Txn(nodes) => KvResponse::Txn(unflatten_txn_response(nodes)?),
            WireResponse::Compaction(c) => KvResponse::Compaction(c),
            WireResponse::LeaseGrant(g) => KvResponse::LeaseGrant(g),
            WireResponse::LeaseRevoke(r) => KvResponse::LeaseRevoke(r),
            WireResponse::LeaseCheckpoint(h) => KvResponse::LeaseCheckpoint(h),
            WireResponse::LeaseTimeToLive(t) => KvResponse::LeaseTimeToLive(t),
            WireResponse::LeaseLeases(l) => KvResponse::LeaseLeases(l),
            WireResponse::Noop => KvResponse::Noop,
            WireResponse::Alarm(a) => KvResponse::Alarm(a),
            WireResponse::LeaseKeepAlive(k) => KvResponse::LeaseKeepAlive(k),
            WireResponse::Auth(a) => KvResponse::Auth(a),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::request::{CompareResult, CompareTarget};
    use proptest::prelude::*;

    fn nested(depth: u32) -> TxnRequest {
        let mut t = TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Version(1),
                key: b"k".to_vec(),
                range_end: Vec::new(),
            }],
            success: vec![RequestOp::Put(PutRequest { key: b"a".to_vec(), ..PutRequest::default() })],
            failure: vec![],
        };
        for _ in 1..depth {
            t = TxnRequest {
                compare: vec![],
                success: vec![RequestOp::Txn(t.clone()), RequestOp::Range(RangeRequest::default())],
                failure: vec![RequestOp::Txn(t)],
            };
        }
        t
    }

    #[test]
    fn commands_round_trip() {
        let commands = [
            KvCommand::Put(PutRequest { key: b"a".to_vec(), value: b"v".to_vec(), lease: 3, ..PutRequest::default() }),
            KvCommand::Txn(nested(4)),
            KvCommand::Compaction(CompactionRequest { revision: 9, physical: true }),
            KvCommand::LeaseGrant(LeaseGrantRequest { ttl: 10, id: 0 }),
            KvCommand::Auth(AuthCommand::RoleGrantPermission {
                name: "r".into(),
                perm: crate::kv::Permission {
                    perm_type: crate::kv::PermType::ReadWrite,
                    key: b"a".to_vec(),
                    range_end: b"b".to_vec(),
                },
            }),
            KvCommand::Auth(AuthCommand::Enable),
            KvCommand::AsUser(crate::kv::UserCommand {
                user: "alice".into(),
                auth_revision: 3,
                command: Box::new(KvCommand::Txn(nested(2))),
            }),
        ];
        for c in commands {
            assert_eq!(KvCommand::decode(&c.encode()), Ok(c));
        }
        let q = KvQuery::Txn(nested(3));
        assert_eq!(KvQuery::decode(&q.encode()), Ok(q));
    }

    #[test]
    fn results_round_trip() {
        let inner = TxnResponse { header: ResponseHeader { revision: 0 }, succeeded: false, responses: vec![] };
        let t = TxnResponse {
            header: ResponseHeader { revision: 7 },
            succeeded: true,
            responses: vec![
                ResponseOp::Txn(inner.clone()),
                ResponseOp::Put(PutResponse::default()),
                ResponseOp::Txn(inner),
            ],
        };
        let auth = AuthResponse { header: ResponseHeader { revision: 3 }, auth_revision: 4, token: "t.9".into() };
        let denied = Err(KvError::Auth(crate::kv::AuthError::PermissionDenied));
        for r in [
            Ok(KvResponse::Txn(t)),
            Err(KvError::DuplicateKey),
            Ok(KvResponse::Noop),
            Ok(KvResponse::Auth(auth)),
            denied,
        ] {
            assert_eq!(decode_result(&encode_result(&r)), Ok(r));
        }
    }

    #[test]
    fn shared_or_cyclic_nodes_are_refused() {
        let leaf = WireTxn { compare: vec![], success: vec![], failure: vec![] };
        let shared = WireTxn { compare: vec![], success: vec![WireOp::Txn(1), WireOp::Txn(1)], failure: vec![] };
        assert!(unflatten_txn(vec![shared, leaf.clone()]).is_err());
        let cyclic = WireTxn { compare: vec![], success: vec![WireOp::Txn(0)], failure: vec![] };
        assert!(unflatten_txn(vec![cyclic]).is_err());
        assert!(unflatten_txn(vec![leaf.clone(), leaf]).is_err());
        assert!(unflatten_txn(vec![]).is_err());
    }

    #[test]
    fn deep_nesting_is_refused_without_recursing() {
        let depth = 10_000usize;
        let nodes: Vec<WireTxn> = (0..depth)
            .map(|i| WireTxn {
                compare: vec![],
                success: if i + 1 < depth { vec![WireOp::Txn(i as u32 + 1)] } else { vec![] },
                failure: vec![],
            })
            .collect();
        let bytes = frame(to_bytes(&WireCommand::Txn(nodes)));
        assert!(KvCommand::decode(&bytes).is_err());
    }

    proptest! {
        #[test]
        fn hostile_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = KvCommand::decode(&bytes);
            let _ = KvQuery::decode(&bytes);
            let _ = decode_result(&bytes);
            let mut framed = vec![KV_FORMAT];
            framed.extend_from_slice(&bytes);
            let _ = KvCommand::decode(&framed);
            let _ = KvQuery::decode(&framed);
            let _ = decode_result(&framed);
        }
    }
}
