//! The write sequence Raft emits when a follower installs a snapshot over a
//! divergent log (`SaveSnapshot` at S, then `TruncateLog { from: S }`), followed
//! by new appends, must be accepted by the WAL writer and recovered exactly.
//! Found by the simulator once it ran on the real WAL.

use lockstep_core::wal::{MemDir, WalConfig, WalIdentity, WalWriter};
use lockstep_core::{Command, Entry, HardState, Membership, Payload, SnapshotMeta};

fn entry(index: u64, term: u64) -> Entry {
    Entry { index, term, payload: Payload::Command(vec![index as u8; 8]) }
}

#[test]
fn snapshot_over_a_divergent_log_then_appends_recovers_every_new_entry() {
    let identity = WalIdentity { cluster_id: 1, member_id: 2, group_id: 1 };
    let mut writer = WalWriter::new(identity, WalConfig::default());
    let mut dir = MemDir::new(false);
    let data = b"state".to_vec();
    let meta = SnapshotMeta {
        group: 1,
        index: 3,
        term: 2,
        membership: Membership::with_voters([1, 2, 3]),
        size: data.len() as u64,
        checksum: crc32c::crc32c(&data),
    };
    let commands = vec![
        Command::SaveHardState(HardState { term: 1, vote: Some(1) }),
        Command::AppendLog(vec![entry(1, 1), entry(2, 1), entry(3, 1)]),
        Command::Sync { id: 1 },
        Command::SaveHardState(HardState { term: 2, vote: None }),
        Command::SaveSnapshot { meta: meta.clone(), data: data.clone() },
        Command::TruncateLog { from: 3 },
        Command::AppendLog(vec![entry(4, 2), entry(5, 2)]),
        Command::Sync { id: 2 },
    ];
    for command in &commands {
        for action in writer.handle(command) {
            dir.apply(&action);
        }
    }
    let report = dir.recover(&identity).expect("recovers");
    let recovered = report.recovered;
    assert_eq!(recovered.snapshot.map(|(m, _)| m), Some(meta));
    let indexes: Vec<(u64, u64)> = recovered.entries.iter().map(|e| (e.index, e.term)).collect();
    assert_eq!(indexes, vec![(4, 2), (5, 2)], "the acknowledged entries after the snapshot survive");
    assert_eq!(recovered.hard_state, HardState { term: 2, vote: None });
}
