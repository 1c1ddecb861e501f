//! Property-based fuzzing of every decoder that reads bytes from another
//! member: the connection handshake and the forwarded-request frames. Inputs
//! are random bytes and damaged valid frames (bit flips, truncations, random
//! splices); every decoder must answer `Ok` or a clear error, never panic,
//! and a damaged frame must never decode as something else silently.

use lockstep_core::{ClientError, Request, Response};
use lockstep_runtime::wire::{Forward, Handshake, FRAME_HEADER_LEN, HANDSHAKE_FIXED_LEN, PROTOCOL_VERSION};
use proptest::prelude::*;

fn handshake() -> impl Strategy<Value = Handshake> {
    (any::<u16>(), any::<u64>(), any::<u64>(), any::<u64>(), "[a-z0-9.:]{0,64}").prop_map(
        |(status, cluster_id, from, to, address)| Handshake {
            version: PROTOCOL_VERSION,
            status,
            cluster_id,
            from,
            to,
            address,
        },
    )
}

fn forward() -> impl Strategy<Value = Forward> {
    let bytes = proptest::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        (any::<u64>(), bytes.clone()).prop_map(|(id, b)| Forward::Request { id, request: Request::Write(b) }),
        (any::<u64>(), bytes.clone()).prop_map(|(id, b)| Forward::Request { id, request: Request::Read(b) }),
        (any::<u64>(), bytes.clone()).prop_map(|(id, b)| Forward::Request { id, request: Request::LeaderRequest(b) }),
        (any::<u64>(), any::<u64>(), bytes.clone())
            .prop_map(|(id, index, result)| Forward::Reply { id, reply: Ok(Response::Written { index, result }) }),
        (any::<u64>(), bytes).prop_map(|(id, b)| Forward::Reply { id, reply: Ok(Response::Read(b)) }),
        any::<u64>().prop_map(|id| Forward::Reply { id, reply: Err(ClientError::Timeout) }),
        (any::<u64>(), "[ -~]{0,40}")
            .prop_map(|(id, why)| Forward::Reply { id, reply: Err(ClientError::Invalid(why)) }),
    ]
}

/// Decodes a forward frame the way the transport does: header, length check,
/// body.
fn decode_forward(bytes: &[u8]) -> Option<Forward> {
    let header: [u8; FRAME_HEADER_LEN] = bytes.get(..FRAME_HEADER_LEN)?.try_into().ok()?;
    let len = Forward::body_len(&header, 1 << 20).ok()?;
    let body = bytes.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len)?;
    Forward::decode(&header, body).ok()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_never_panic_the_handshake_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = Handshake::decode(&bytes);
        if let Some(fixed) = bytes.get(..HANDSHAKE_FIXED_LEN) {
            let _ = Handshake::rest_len(fixed.try_into().unwrap());
        }
    }

    #[test]
    fn damaged_handshakes_are_refused(h in handshake(), flip in any::<prop::sample::Index>(), bit in 0u8..8) {
        let bytes = h.encode();
        prop_assert_eq!(Handshake::decode(&bytes), Ok(h.clone()));
        let mut bad = bytes.clone();
        let at = flip.index(bad.len());
        bad[at] ^= 1 << bit;
        // Every byte is covered by the magic, a length or the checksum.
        prop_assert!(Handshake::decode(&bad).is_err(), "flipped byte {} decoded", at);
        for cut in 0..bytes.len() {
            prop_assert!(Handshake::decode(&bytes[..cut]).is_err());
        }
    }

    #[test]
    fn random_bytes_never_panic_the_forward_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = decode_forward(&bytes);
        if bytes.len() >= FRAME_HEADER_LEN {
            let header: [u8; FRAME_HEADER_LEN] = bytes[..FRAME_HEADER_LEN].try_into().unwrap();
            let _ = Forward::decode(&header, &bytes[FRAME_HEADER_LEN..]);
        }
    }

    #[test]
    fn damaged_forward_frames_are_refused(
        f in forward(),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        splice in proptest::collection::vec(any::<u8>(), 1..16),
    ) {
        let bytes = f.encode();
        prop_assert_eq!(decode_forward(&bytes), Some(f.clone()));
        let mut bad = bytes.clone();
        let at = flip.index(bad.len());
        bad[at] ^= 1 << bit;
        prop_assert_ne!(decode_forward(&bad), Some(f.clone()), "flipped byte {} went unnoticed", at);
        let mut spliced = bytes.clone();
        let at = flip.index(spliced.len());
        spliced.splice(at..at, splice);
        let _ = decode_forward(&spliced);
        for cut in 0..bytes.len() {
            prop_assert_eq!(decode_forward(&bytes[..cut]), None);
        }
    }
}
