//! WAL recovery over one segment file's bytes and a snapshot file's bytes
//! (`lockstep_core::wal::recover`): the first byte says whether the rest is
//! a segment, or a snapshot file beside an empty segment.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_core::wal::{recover, SegmentId, WalIdentity};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let identity = WalIdentity { cluster_id: 1, member_id: 1, group_id: 1 };
    let name = SegmentId { seq: 1, first_index: 1 }.file_name();
    if pick % 2 == 0 {
        let _ = recover(&identity, &[(name, rest)], None);
    } else {
        let _ = recover::<String, &[u8]>(&identity, &[], Some(rest));
    }
});
