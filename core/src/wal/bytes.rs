//! Little-endian reads that never panic: every read of on-disk bytes goes through
//! here and yields `None` when the bytes run out.

/// The `u32` stored little-endian at `at`, if the bytes reach that far.
pub(crate) fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    let array: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(array))
}

/// The `u64` stored little-endian at `at`, if the bytes reach that far.
pub(crate) fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let array: [u8; 8] = bytes.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(array))
}

/// Whether every byte is zero (true for no bytes at all).
pub(crate) fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// A length or offset as the `u64` that reports and the disk format use.
pub(crate) fn to_u64(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits in u64 on every supported target")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_little_endian_and_bounded() {
        let bytes = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u32_at(&bytes, 0), Some(0x0403_0201));
        assert_eq!(u64_at(&bytes, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(u32_at(&bytes, 6), None);
        assert_eq!(u64_at(&bytes, 2), None);
        assert_eq!(u32_at(&bytes, usize::MAX), None);
        assert!(all_zero(&[]));
        assert!(!all_zero(&[0, 1]));
    }
}
