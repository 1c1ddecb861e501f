//! Reads the records of one segment and classifies how they end: cleanly (end of
//! file or zero padding), with a write cut short by a crash, or with damage.
//!
//! The classification looks only at the bytes. A bad record counts as *torn*
//! (cut short) only when nothing but zeroes or the end of the file follows it;
//! whether a torn record may be dropped also depends on where it is (only at the
//! end of the last segment), which the caller decides.

use crate::wal::bytes::{all_zero, to_u64};
use crate::wal::cipher::{open_record_body, Cipher};
use crate::wal::record::{Record, RecordHeader, RecordProblem, TornReason, RECORD_HEADER_LEN};

/// A record and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScannedRecord {
    /// Byte offset of the record header in the file.
    pub(crate) offset: u64,
    /// The record.
    pub(crate) record: Record,
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Stop {
    /// The records end at `at`; from there to the end of the file is zero padding
    /// (or nothing).
    End {
        /// Where the padding starts.
        at: u64,
    },
    /// The record at `at` is incomplete and only zeroes or the end of the file
    /// follow it: a write cut short, if this is the end of the log.
    Torn {
        /// Where the record starts.
        at: u64,
        /// How it is incomplete.
        reason: TornReason,
    },
    /// The bytes at `at` are damaged in a way a cut-short write cannot explain.
    Damaged {
        /// Where the damaged record (or the unexpected data) starts.
        at: u64,
        /// What is wrong.
        problem: RecordProblem,
        /// Where the next record starts, when the damaged record's length is known.
        resume: Option<u64>,
    },
}

/// Reads records from `start` until the data ends or a record is bad. A padding
/// record must end on the first boundary of `block_size` at least a header after
/// its start (unchecked when the block size is unknown: fsck reading a segment
/// whose header is damaged).
///
/// A sealed record is opened with `cipher` after its checksums passed; one
/// that cannot be opened (no key, another key, tampering) is damage.
pub(crate) fn scan(
    bytes: &[u8],
    start: usize,
    block_size: Option<u32>,
    cipher: Option<&Cipher>,
) -> (Vec<ScannedRecord>, Stop) {
    let mut records = Vec::new();
    let mut at = start;
    loop {
        let rest = bytes.get(at..).unwrap_or(&[]);
        let offset = to_u64(at);
        if all_zero(rest) {
            return (records, Stop::End { at: offset });
        }
        if rest.len() < RECORD_HEADER_LEN {
            let reason = TornReason::PartialHeader { available: to_u64(rest.len()) };
            return (records, Stop::Torn { at: offset, reason });
        }
        let after_header = &rest[RECORD_HEADER_LEN..];
        if all_zero(&rest[..RECORD_HEADER_LEN]) {
            let data_at = offset + to_u64(rest.iter().position(|b| *b != 0).unwrap_or(0));
            let problem = RecordProblem::DataAfterPadding { data_at };
            return (records, Stop::Damaged { at: offset, problem, resume: None });
        }
        let header = match RecordHeader::decode(rest) {
            Ok(header) => header,
            Err(RecordProblem::HeaderChecksum { .. }) if all_zero(after_header) => {
                return (records, Stop::Torn { at: offset, reason: TornReason::TornHeader });
            }
            Err(problem) => {
                let resume = intact_length(&problem, rest).map(|len| offset + to_u64(RECORD_HEADER_LEN + len));
                return (records, Stop::Damaged { at: offset, problem, resume });
            }
        };
        let body_len = header.body_len();
        let Some(body) = after_header.get(..body_len) else {
            let reason =
                TornReason::BodyBeyondEnd { len: u64::from(header.len), available: to_u64(after_header.len()) };
            return (records, Stop::Torn { at: offset, reason });
        };
        let next = at + RECORD_HEADER_LEN + body_len;
        let actual = crc32c::crc32c(body);
        if actual != header.body_crc {
            if all_zero(&after_header[body_len..]) {
                return (records, Stop::Torn { at: offset, reason: TornReason::BodyChecksum });
            }
            let problem = RecordProblem::BodyChecksum { stored: header.body_crc, actual };
            return (records, Stop::Damaged { at: offset, problem, resume: Some(to_u64(next)) });
        }
        let opened;
        let body = if header.sealed {
            if crate::wal::record::is_padding_kind(header.kind) {
                let problem = RecordProblem::Invalid("a padding record is never sealed".into());
                return (records, Stop::Damaged { at: offset, problem, resume: Some(to_u64(next)) });
            }
            match open_record_body(cipher, header.kind, offset, body) {
                Ok(plain) => {
                    opened = plain;
                    &opened[..]
                }
                Err(problem) => {
                    let problem = RecordProblem::Sealed(problem);
                    return (records, Stop::Damaged { at: offset, problem, resume: Some(to_u64(next)) });
                }
            }
        } else {
            body
        };
        match Record::decode_body(header.kind, body) {
            Ok(Record::Padding { .. }) if !padding_fits(offset, to_u64(next), block_size) => {
                let problem =
                    RecordProblem::MisalignedPadding { end: to_u64(next), block_size: block_size.unwrap_or(0) };
                return (records, Stop::Damaged { at: offset, problem, resume: Some(to_u64(next)) });
            }
            Ok(record) => records.push(ScannedRecord { offset, record }),
            Err(problem) => return (records, Stop::Damaged { at: offset, problem, resume: Some(to_u64(next)) }),
        }
        at = next;
    }
}

/// Whether a padding record from `start` to `end` ends where the writer ends one:
/// on the first block boundary at least a record header after `start`.
fn padding_fits(start: u64, end: u64, block_size: Option<u32>) -> bool {
    let Some(block) = block_size.map(u64::from) else {
        return true;
    };
    let header = to_u64(RECORD_HEADER_LEN);
    end.is_multiple_of(block) && end - start >= header && end - start < header + block
}

/// The body length of a record whose header passed its checksum but was refused
/// for another reason (unknown kind, reserved bits), if the body fits in the file.
fn intact_length(problem: &RecordProblem, rest: &[u8]) -> Option<usize> {
    if !matches!(problem, RecordProblem::UnknownKind(_) | RecordProblem::ReservedNotZero) {
        return None;
    }
    let len = usize::try_from(crate::wal::bytes::u32_at(rest, 0)?).ok()?;
    (RECORD_HEADER_LEN + len <= rest.len()).then_some(len)
}

/// The first offset at or after `from` where a whole, checksum-valid record
/// starts; used by fsck to read on past damage. Payload bytes can contain
/// something that looks like a record, so this is a best effort for reporting,
/// never a basis for recovery.
pub(crate) fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    let last = bytes.len().checked_sub(RECORD_HEADER_LEN)?;
    (from..=last).find(|&at| {
        let rest = &bytes[at..];
        let Ok(header) = RecordHeader::decode(rest) else {
            return false;
        };
        rest.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + header.body_len())
            .is_some_and(|body| crc32c::crc32c(body) == header.body_crc)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raft::message::HardState;

    fn two_records() -> (Vec<u8>, usize) {
        let mut bytes = Record::TruncateFrom(3).encode();
        let first = bytes.len();
        Record::HardState(HardState { term: 2, vote: Some(1) }).encode_into(&mut bytes);
        (bytes, first)
    }

    #[test]
    fn clean_end_with_and_without_padding() {
        let (bytes, _) = two_records();
        let (records, stop) = scan(&bytes, 0, None, None);
        assert_eq!(records.len(), 2);
        assert_eq!(stop, Stop::End { at: to_u64(bytes.len()) });
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + 100, 0);
        assert_eq!(scan(&padded, 0, None, None), (records, Stop::End { at: to_u64(bytes.len()) }));
    }

    #[test]
    fn every_cut_of_the_last_record_is_torn() {
        let (bytes, first) = two_records();
        for cut in first + 1..bytes.len() {
            for padding in [0, 7, 64] {
                let mut torn = bytes[..cut].to_vec();
                torn.resize(cut + padding, 0);
                let (records, stop) = scan(&torn, 0, None, None);
                if torn.get(..bytes.len()) == Some(&bytes[..]) {
                    continue; // The cut-off bytes happened to be zero: the record is whole.
                }
                assert_eq!(records.len(), 1, "cut {cut}");
                match stop {
                    Stop::Torn { at, .. } => assert_eq!(at, to_u64(first)),
                    // The cut-off bytes of the header happened to be zero already.
                    Stop::End { at } => assert_eq!(at, to_u64(first), "cut {cut}: {stop:?}"),
                    Stop::Damaged { .. } => panic!("cut {cut} with {padding} zero bytes: {stop:?}"),
                }
            }
        }
    }

    #[test]
    fn damage_followed_by_a_record_is_not_torn() {
        let (bytes, first) = two_records();
        for at in 0..first {
            let mut bad = bytes.clone();
            bad[at] ^= 0x10;
            let (records, stop) = scan(&bad, 0, None, None);
            assert!(records.is_empty());
            assert!(matches!(stop, Stop::Damaged { at: 0, .. }), "byte {at}: {stop:?}");
        }
    }

    #[test]
    fn padding_must_end_on_the_first_block_boundary_after_its_header() {
        let mut bytes = Record::TruncateFrom(3).encode();
        let start = bytes.len(); // 24
        Record::Padding { len: 64 - 24 - 16 }.encode_into(&mut bytes);
        Record::TruncateFrom(4).encode_into(&mut bytes);
        let (records, stop) = scan(&bytes, 0, Some(64), None);
        assert_eq!(records.len(), 3);
        assert_eq!(records[1], ScannedRecord { offset: to_u64(start), record: Record::Padding { len: 24 } });
        assert_eq!(stop, Stop::End { at: to_u64(bytes.len()) });
        // The same bytes with a block size they do not fit.
        let (records, stop) = scan(&bytes, 0, Some(128), None);
        assert_eq!(records.len(), 1);
        let problem = RecordProblem::MisalignedPadding { end: 64, block_size: 128 };
        assert_eq!(stop, Stop::Damaged { at: to_u64(start), problem, resume: Some(64) });
        // A padding record that skips a whole block is not what the writer writes.
        let mut long = Record::TruncateFrom(3).encode();
        Record::Padding { len: 64 + 24 }.encode_into(&mut long);
        assert!(matches!(scan(&long, 0, Some(64), None).1, Stop::Damaged { .. }));
        // A padding record that ends short of the boundary.
        let tight = Record::Padding { len: 64 - 16 - 8 }.encode();
        assert!(matches!(scan(&tight, 0, Some(64), None).1, Stop::Damaged { .. }), "ends at 56");
        // Less than a header left in the block: the padding runs to the next boundary.
        assert!(padding_fits(60, 128, Some(64)));
        assert!(!padding_fits(60, 64, Some(64)), "4 bytes cannot hold a header");
        assert!(!padding_fits(0, 128, Some(64)));
        assert!(padding_fits(0, 64, Some(64)));
        assert!(padding_fits(3, 65, None));
    }

    #[test]
    fn data_after_padding_is_damage() {
        let (bytes, _) = two_records();
        let mut bad = vec![0u8; 40];
        bad.extend_from_slice(&bytes);
        let (_, stop) = scan(&bad, 0, None, None);
        assert_eq!(
            stop,
            Stop::Damaged { at: 0, problem: RecordProblem::DataAfterPadding { data_at: 40 }, resume: None }
        );
        assert_eq!(resync(&bad, 1), Some(40));
    }
}
