//! The peer port's handshake frame (`lockstep_runtime::wire::Handshake`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_runtime::wire::Handshake;

fuzz_target!(|data: &[u8]| {
    if let Ok(handshake) = Handshake::decode(data) {
        // What decodes encodes back to the same frame.
        assert_eq!(Handshake::decode(&handshake.encode()).as_ref(), Ok(&handshake));
    }
});
