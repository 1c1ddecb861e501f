//! Raft messages, log entries, hard states and snapshot metadata as they
//! arrive from peers and the disk (`lockstep_core::codec`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_core::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = codec::decode_message(data) {
        assert_eq!(codec::decode_message(&codec::encode_message(&message)), Ok(message));
    }
    let _ = codec::decode_entry(data);
    let _ = codec::decode_hard_state(data);
    let _ = codec::decode_snapshot_meta(data);
});
