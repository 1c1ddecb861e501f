//! `lockstep snapshot restore`'s input: a snapshot file (header, state,
//! optional SHA-256 trailer) and the state inside it. The first byte picks
//! raw bytes, or the rest as state data behind a valid header (so that the
//! state decoder is reached past the checksums).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep::snapshot::{decode_snapshot_file, encode_snapshot_file, SnapshotHeader};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    if pick % 2 == 0 {
        let _ = decode_snapshot_file(rest);
    } else {
        let header = SnapshotHeader {
            cluster_id: 1,
            member_id: 1,
            applied_index: 1,
            revision: 1,
            data_len: rest.len() as u64,
            data_crc: crc32c::crc32c(rest),
        };
        let _ = decode_snapshot_file(&encode_snapshot_file(&header, rest));
    }
});
