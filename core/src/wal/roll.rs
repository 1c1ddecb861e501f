//! When to start a new segment: a pure policy over sizes.

/// What to do before appending a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Roll {
    /// Append to the current segment.
    Stay,
    /// Start a new segment and append there.
    NewSegment,
}

/// Decides whether a record of `record_len` bytes goes into the current segment,
/// which holds `segment_len` bytes. A segment is closed once the record would take
/// it past `segment_size_max`, unless it holds no record beyond the ones written
/// when it was created (`fresh`): a record larger than the limit gets a segment of
/// its own instead of an endless series of new ones.
pub fn roll_decision(segment_len: u64, fresh: bool, record_len: u64, segment_size_max: u64) -> Roll {
    if !fresh && segment_len.saturating_add(record_len) > segment_size_max {
        Roll::NewSegment
    } else {
        Roll::Stay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_only_when_the_limit_would_be_passed() {
        assert_eq!(roll_decision(100, false, 28, 128), Roll::Stay);
        assert_eq!(roll_decision(100, false, 29, 128), Roll::NewSegment);
        assert_eq!(roll_decision(100, true, 1_000, 128), Roll::Stay, "a fresh segment takes any record");
        assert_eq!(roll_decision(10, false, u64::MAX, 100), Roll::NewSegment, "no overflow");
    }
}
