//! The backend quota and the NOSPACE alarm, like etcd's `--quota-backend-bytes`:
//! writes that add data stop at the quota, deletes, compaction and reads go on,
//! compaction really frees space, and disarming restores writes.

use lockstep_core::kv::{
    decode_reply, AlarmAction, AlarmMember, AlarmRequest, AlarmType, CompactionRequest, DeleteRangeRequest, KvCommand,
    KvConfig, KvError, KvQuery, KvResponse, KvResult, KvStore, MemStorage, PutRequest, RangeRequest,
};
use lockstep_core::{Payload, StateMachine};

struct Harness {
    store: KvStore<MemStorage>,
    index: u64,
}

impl Harness {
    fn new(quota_bytes: u64) -> Harness {
        let config = KvConfig { quota_bytes, ..KvConfig::default() };
        Harness { store: KvStore::open(config, MemStorage::new()).expect("opens"), index: 0 }
    }

    fn apply(&mut self, command: KvCommand) -> KvResult {
        self.index += 1;
        let bytes = self.store.apply(self.index, &Payload::Command(command.encode()));
        decode_reply(&bytes).expect("decodes")
    }

    fn put(&mut self, key: &str, size: usize) -> KvResult {
        self.apply(KvCommand::Put(PutRequest {
            key: key.as_bytes().to_vec(),
            value: vec![b'v'; size],
            ..PutRequest::default()
        }))
    }

    fn alarms(&self) -> Vec<AlarmMember> {
        match decode_reply(&self.store.query(&KvQuery::Alarms.encode())).expect("decodes") {
            Ok(KvResponse::Alarm(a)) => a.alarms,
            other => panic!("unexpected {other:?}"),
        }
    }
}

const NOSPACE: AlarmMember = AlarmMember { member_id: 0, alarm: AlarmType::NoSpace };

#[test]
fn writes_stop_at_the_quota_and_resume_after_compaction_and_disarm() {
    let mut h = Harness::new(2_000);
    let mut written = 0;
    let err = loop {
        match h.put(&format!("k{}", written % 4), 200) {
            Ok(_) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 100, "the quota never stopped writes");
    };
    assert_eq!(err, KvError::NoSpace);
    assert_eq!(err.to_string(), "etcdserver: mvcc: database space exceeded");
    assert_eq!(h.alarms(), vec![NOSPACE], "the alarm was raised through the replicated state");
    assert!(h.store.mvcc().size_bytes() <= 2_000);

    // While the alarm is on: small writes fail too, admission refuses them, reads,
    // deletes and compaction go on.
    assert_eq!(h.put("tiny", 1), Err(KvError::NoSpace));
    let put = KvCommand::Put(PutRequest { key: b"x".to_vec(), value: b"y".to_vec(), ..PutRequest::default() });
    assert_eq!(h.store.validate(&put.encode()), Err("etcdserver: mvcc: database space exceeded".to_string()));
    let range = KvQuery::Range(RangeRequest { key: b"k0".to_vec(), ..RangeRequest::default() });
    assert!(matches!(decode_reply(&h.store.query(&range.encode())).expect("decodes"), Ok(KvResponse::Range(_))));
    let delete = KvCommand::DeleteRange(DeleteRangeRequest { key: b"k3".to_vec(), ..DeleteRangeRequest::default() });
    assert!(h.apply(delete).is_ok());
    let before = h.store.mvcc().size_bytes();
    let revision = h.store.current_revision();
    assert!(h.apply(KvCommand::Compaction(CompactionRequest { revision, ..CompactionRequest::default() })).is_ok());
    let after = h.store.mvcc().size_bytes();
    // Left: the latest record of k0..k2 and the delete of k3 (kept at the compaction revision).
    assert!(after < before * 2 / 3, "compaction freed space online: {before} -> {after} bytes");

    // The operator disarms (etcdctl alarm disarm): writes work again.
    let disarm = AlarmRequest { action: AlarmAction::Deactivate, member_id: 0, alarm: AlarmType::None };
    assert!(h.apply(KvCommand::Alarm(disarm)).is_ok());
    assert_eq!(h.alarms(), vec![]);
    assert!(h.put("k0", 200).is_ok());
}

#[test]
fn alarms_survive_snapshot_and_restart() {
    let mut h = Harness::new(500);
    while h.put("k", 100).is_ok() {}
    let corrupt = AlarmRequest { action: AlarmAction::Activate, member_id: 7, alarm: AlarmType::Corrupt };
    assert!(h.apply(KvCommand::Alarm(corrupt)).is_ok());
    let expected = vec![NOSPACE, AlarmMember { member_id: 7, alarm: AlarmType::Corrupt }];
    assert_eq!(h.alarms(), expected);

    let mut restored = Harness::new(500);
    restored.store.restore(&h.store.snapshot()).expect("restores");
    assert_eq!(restored.alarms(), expected);
    assert_eq!(restored.store.mvcc().size_bytes(), h.store.mvcc().size_bytes());

    let reopened =
        KvStore::open(KvConfig { quota_bytes: 500, ..KvConfig::default() }, h.store.into_storage()).expect("reopens");
    assert_eq!(reopened.mvcc().alarms(), &expected[..]);
    assert_eq!(reopened.mvcc().size_bytes(), restored.store.mvcc().size_bytes());
}

#[test]
fn listing_alarms_is_a_query_not_a_command() {
    let mut h = Harness::new(1 << 20);
    let get = AlarmRequest { action: AlarmAction::Get, ..AlarmRequest::default() };
    assert!(matches!(h.apply(KvCommand::Alarm(get)), Err(KvError::Malformed(_))));
}
