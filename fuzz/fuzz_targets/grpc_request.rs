//! A gRPC request body (5-byte framing, compression flag, size limit,
//! protobuf) to one of the etcd methods (`lockstep_api::fuzz::grpc_target`:
//! the first byte picks the method). One service for the whole run, so
//! that state left by one input meets the next.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_api::fuzz::{grpc_target, Harness};

thread_local! {
    static HARNESS: Harness = Harness::new();
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|harness| {
        if let Some(outcome) = grpc_target(harness, data) {
            if outcome.ended {
                let code = outcome.code.expect("a finished call has a grpc-status");
                assert!(code == 0 || !outcome.message.is_empty(), "code {code} without a message");
                assert_ne!(code, 2, "UNKNOWN: {}", outcome.message);
            }
        }
    });
});
