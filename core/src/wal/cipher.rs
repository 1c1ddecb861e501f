//! Encryption at rest of WAL records and of the snapshot file, behind a trait.
//!
//! core stays pure: it holds no cryptography library and draws no entropy.
//! The runtime passes a [`WalCipher`] (AES-256-GCM with random 96-bit nonces in
//! production, `lockstep_runtime::crypt`), and core decides what is sealed,
//! what each sealed piece is bound to, and how a reader tells "encrypted, no
//! key", "encrypted with another key" and "tampered with" apart.
//!
//! # Sealed record
//!
//! A record whose header byte 5 (the first reserved byte) is 1. Its header
//! (`len`, `kind`, `body_crc`, `header_crc`) is in plain text and framed
//! exactly as a plain record's, so torn writes and bit rot are found by the
//! checksums before any decryption; its body is
//!
//! ```text
//! offset size field
//!      0    8 key_id    u64, the key it was sealed with
//!      8    … sealed    the cipher's output (AES-GCM: nonce 12, ciphertext, tag 16)
//! ```
//!
//! The associated data binds the sealed body to its kind, its key id and the
//! record's offset in its segment: `"LKSPREC1" || kind u8 || key_id u64 ||
//! offset u64`. A record moved elsewhere in the file or given another kind
//! does not authenticate. Padding records are never sealed (they hold only
//! zeroes).
//!
//! # Sealed snapshot file
//!
//! ```text
//! offset size field
//!      0    8 magic     "LKSPSEAL"
//!      8    4 version   u32 = 1
//!     12    4 reserved  u32 = 0
//!     16    8 key_id    u64
//!     24    … sealed    the cipher's output over the whole plain snapshot file
//! ```
//!
//! with bytes `0..24` as associated data.

use std::fmt;
use std::sync::Arc;

use crate::wal::bytes::{u32_at, u64_at};

/// What the runtime supplies to encrypt and authenticate WAL records and
/// snapshot files. Implementations must never reuse a nonce under one key
/// (the production one draws a random 96-bit nonce from the operating
/// system for every call).
pub trait WalCipher: Send + Sync {
    /// The key's id, written beside every sealed piece so that a reader with
    /// another key says so instead of reporting damage.
    fn key_id(&self) -> u64;
    /// Appends `plain` sealed with `aad` as associated data to `out`.
    fn seal(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>);
    /// The plain text of `sealed` (what [`WalCipher::seal`] appended), or
    /// `None` when it does not authenticate with `aad` under this key.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>>;
}

/// A shared [`WalCipher`] (cheap to clone).
#[derive(Clone)]
pub struct Cipher(Arc<dyn WalCipher>);

impl Cipher {
    /// Shares `cipher`.
    pub fn new(cipher: impl WalCipher + 'static) -> Cipher {
        Cipher(Arc::new(cipher))
    }

    /// The key's id.
    pub fn key_id(&self) -> u64 {
        self.0.key_id()
    }
}

impl fmt::Debug for Cipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cipher(key id {:016x})", self.key_id())
    }
}

/// The first eight bytes of the associated data of a sealed record.
const RECORD_AAD_MAGIC: [u8; 8] = *b"LKSPREC1";
/// The first eight bytes of a sealed snapshot file.
pub const SEALED_SNAPSHOT_MAGIC: [u8; 8] = *b"LKSPSEAL";
/// The sealed snapshot file format this build writes and reads.
pub const SEALED_SNAPSHOT_VERSION: u32 = 1;
/// Length of a sealed snapshot file's plain header (its associated data).
pub const SEALED_SNAPSHOT_HEADER_LEN: usize = 24;
/// Length of the key id at the start of a sealed record's body.
pub const SEALED_KEY_ID_LEN: usize = 8;

fn record_aad(kind: u8, key_id: u64, offset: u64) -> [u8; 25] {
    let mut aad = [0u8; 25];
    aad[0..8].copy_from_slice(&RECORD_AAD_MAGIC);
    aad[8] = kind;
    aad[9..17].copy_from_slice(&key_id.to_le_bytes());
    aad[17..25].copy_from_slice(&offset.to_le_bytes());
    aad
}

/// The body of a sealed record of `kind` at `offset` whose plain body is
/// `plain`.
pub(crate) fn seal_record_body(cipher: &Cipher, kind: u8, offset: u64, plain: &[u8]) -> Vec<u8> {
    let key_id = cipher.key_id();
    let mut out = Vec::with_capacity(SEALED_KEY_ID_LEN + plain.len() + 32);
    out.extend_from_slice(&key_id.to_le_bytes());
    cipher.0.seal(&record_aad(kind, key_id, offset), plain, &mut out);
    out
}

/// Why a sealed record or snapshot file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SealProblem {
    /// It is encrypted and no key was given.
    NoKey {
        /// The id of the key it was sealed with.
        key_id: u64,
    },
    /// It was sealed with another key.
    WrongKey {
        /// The id of the key it was sealed with.
        sealed_with: u64,
        /// The id of the key given.
        key_id: u64,
    },
    /// The key matches but the sealed bytes do not authenticate: they were
    /// changed after they were written (their checksums were recomputed, or
    /// the change is in the snapshot file, whose checksum is inside).
    Unauthenticated,
    /// Too short to hold a key id, or a header this build cannot read.
    Malformed(String),
}

impl fmt::Display for SealProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SealProblem::NoKey { key_id } => write!(
                f,
                "encrypted with key id {key_id:016x}, and no key was given (set encryption.key_file, or pass \
                 --key-file)"
            ),
            SealProblem::WrongKey { sealed_with, key_id } => write!(
                f,
                "encrypted with key id {sealed_with:016x}, but the key file has key id {key_id:016x}: use the key \
                 it was written with"
            ),
            SealProblem::Unauthenticated => f.write_str(
                "authentication failed: the encrypted bytes were changed after they were written (tampering or \
                 damage)",
            ),
            SealProblem::Malformed(why) => write!(f, "malformed encrypted data: {why}"),
        }
    }
}

/// The plain body of a sealed record of `kind` at `offset`.
pub(crate) fn open_record_body(
    cipher: Option<&Cipher>,
    kind: u8,
    offset: u64,
    sealed: &[u8],
) -> Result<Vec<u8>, SealProblem> {
    let Some(key_id) = u64_at(sealed, 0) else {
        return Err(SealProblem::Malformed(format!("a sealed body of {} bytes has no key id", sealed.len())));
    };
    let Some(cipher) = cipher else {
        return Err(SealProblem::NoKey { key_id });
    };
    if key_id != cipher.key_id() {
        return Err(SealProblem::WrongKey { sealed_with: key_id, key_id: cipher.key_id() });
    }
    cipher.0.open(&record_aad(kind, key_id, offset), &sealed[SEALED_KEY_ID_LEN..]).ok_or(SealProblem::Unauthenticated)
}

/// Whether `bytes` is a sealed snapshot file (by its magic).
pub fn is_sealed_snapshot(bytes: &[u8]) -> bool {
    bytes.starts_with(&SEALED_SNAPSHOT_MAGIC)
}

/// `plain` (a whole snapshot file) sealed with `cipher`.
pub fn seal_snapshot_file(cipher: &Cipher, plain: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(SEALED_SNAPSHOT_HEADER_LEN + plain.len() + 32);
    out.extend_from_slice(&SEALED_SNAPSHOT_MAGIC);
    out.extend_from_slice(&SEALED_SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    out.extend_from_slice(&cipher.key_id().to_le_bytes());
    let aad = out.clone();
    cipher.0.seal(&aad, plain, &mut out);
    out
}

/// The plain snapshot file inside a sealed one.
pub fn open_snapshot_file(cipher: Option<&Cipher>, bytes: &[u8]) -> Result<Vec<u8>, SealProblem> {
    let (Some(version), Some(key_id)) = (u32_at(bytes, 8), u64_at(bytes, 16)) else {
        return Err(SealProblem::Malformed(format!("{} bytes: shorter than the sealed file header", bytes.len())));
    };
    if !is_sealed_snapshot(bytes) || version != SEALED_SNAPSHOT_VERSION {
        return Err(SealProblem::Malformed(format!("not a sealed snapshot file of version {SEALED_SNAPSHOT_VERSION}")));
    }
    let Some(cipher) = cipher else {
        return Err(SealProblem::NoKey { key_id });
    };
    if key_id != cipher.key_id() {
        return Err(SealProblem::WrongKey { sealed_with: key_id, key_id: cipher.key_id() });
    }
    let (aad, sealed) = bytes.split_at(SEALED_SNAPSHOT_HEADER_LEN);
    cipher.0.open(aad, sealed).ok_or(SealProblem::Unauthenticated)
}

/// A cipher for tests only: **not encryption** (a keyed XOR stream with a
/// keyed checksum as tag), deterministic, with the same framing as a real
/// AEAD (8-byte nonce counter, 8-byte tag) so that core's tests need no
/// cryptography library.
#[cfg(test)]
pub(crate) mod toy {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::WalCipher;

    pub(crate) struct ToyCipher {
        pub(crate) key: u64,
        nonce: AtomicU64,
    }

    impl ToyCipher {
        pub(crate) fn new(key: u64) -> ToyCipher {
            ToyCipher { key, nonce: AtomicU64::new(1) }
        }

        fn stream(&self, nonce: u64, i: usize) -> u8 {
            let x = self.key ^ nonce.rotate_left(17) ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            (x.wrapping_mul(0xff51_afd7_ed55_8ccd) >> 56) as u8
        }

        fn tag(&self, nonce: u64, aad: &[u8], cipher_text: &[u8]) -> u64 {
            let mut bytes = self.key.to_le_bytes().to_vec();
            bytes.extend_from_slice(&nonce.to_le_bytes());
            bytes.extend_from_slice(aad);
            bytes.extend_from_slice(cipher_text);
            u64::from(crc32c::crc32c(&bytes)) | (u64::from(crc32c::crc32c(&bytes[4..])) << 32)
        }
    }

    impl WalCipher for ToyCipher {
        fn key_id(&self) -> u64 {
            self.key.wrapping_mul(31)
        }

        fn seal(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
            let nonce = self.nonce.fetch_add(1, Ordering::Relaxed);
            out.extend_from_slice(&nonce.to_le_bytes());
            let start = out.len();
            out.extend(plain.iter().enumerate().map(|(i, b)| b ^ self.stream(nonce, i)));
            let tag = self.tag(nonce, aad, &out[start..]);
            out.extend_from_slice(&tag.to_le_bytes());
        }

        fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
            if sealed.len() < 16 {
                return None;
            }
            let nonce = u64::from_le_bytes(sealed[0..8].try_into().ok()?);
            let (body, tag) = sealed[8..].split_at(sealed.len() - 16);
            if u64::from_le_bytes(tag.try_into().ok()?) != self.tag(nonce, aad, body) {
                return None;
            }
            Some(body.iter().enumerate().map(|(i, b)| b ^ self.stream(nonce, i)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::toy::ToyCipher;
    use super::*;

    #[test]
    fn records_open_only_where_and_how_they_were_sealed() {
        let cipher = Cipher::new(ToyCipher::new(7));
        let sealed = seal_record_body(&cipher, 1, 4096, b"key=value");
        assert!(!sealed.windows(9).any(|w| w == b"key=value"));
        assert_eq!(open_record_body(Some(&cipher), 1, 4096, &sealed).unwrap(), b"key=value");
        assert_eq!(open_record_body(Some(&cipher), 1, 4112, &sealed), Err(SealProblem::Unauthenticated));
        assert_eq!(open_record_body(Some(&cipher), 2, 4096, &sealed), Err(SealProblem::Unauthenticated));
        assert_eq!(open_record_body(None, 1, 4096, &sealed), Err(SealProblem::NoKey { key_id: cipher.key_id() }));
        let other = Cipher::new(ToyCipher::new(8));
        assert_eq!(
            open_record_body(Some(&other), 1, 4096, &sealed),
            Err(SealProblem::WrongKey { sealed_with: cipher.key_id(), key_id: other.key_id() })
        );
        for i in SEALED_KEY_ID_LEN..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert_eq!(open_record_body(Some(&cipher), 1, 4096, &bad), Err(SealProblem::Unauthenticated), "byte {i}");
        }
        assert!(matches!(open_record_body(Some(&cipher), 1, 0, &[1, 2]), Err(SealProblem::Malformed(_))));
    }

    #[test]
    fn snapshot_files_round_trip_and_refuse_tampering() {
        let cipher = Cipher::new(ToyCipher::new(7));
        let sealed = seal_snapshot_file(&cipher, b"LKSPSNAP plain snapshot");
        assert!(is_sealed_snapshot(&sealed));
        assert_eq!(open_snapshot_file(Some(&cipher), &sealed).unwrap(), b"LKSPSNAP plain snapshot");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x10;
            assert!(open_snapshot_file(Some(&cipher), &bad).is_err(), "byte {i}");
        }
        assert_eq!(open_snapshot_file(None, &sealed), Err(SealProblem::NoKey { key_id: cipher.key_id() }));
        assert!(matches!(open_snapshot_file(Some(&cipher), b"short"), Err(SealProblem::Malformed(_))));
    }
}
