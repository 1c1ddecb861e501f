//! The peer port's forwarded-request frames (`lockstep_runtime::wire::Forward`):
//! a fixed-size header, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_runtime::wire::{Forward, FRAME_HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    if data.len() < FRAME_HEADER_LEN {
        return;
    }
    let (header, body) = data.split_at(FRAME_HEADER_LEN);
    let header: &[u8; FRAME_HEADER_LEN] = header.try_into().expect("the header's length");
    let _ = Forward::decode(header, body);
});
