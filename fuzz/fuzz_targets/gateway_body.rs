//! A JSON gateway body to one of the `/v3/...` paths
//! (`lockstep_api::fuzz::gateway_target`: the first byte picks the path).
#![no_main]

use libfuzzer_sys::fuzz_target;
use lockstep_api::fuzz::{gateway_target, Harness};

thread_local! {
    static HARNESS: Harness = Harness::new();
}

fuzz_target!(|data: &[u8]| {
    HARNESS.with(|harness| {
        if let Some(outcome) = gateway_target(harness, data) {
            assert!(outcome.status < 500 || outcome.status == 501 || outcome.status == 503, "{outcome:?}");
        }
    });
});
