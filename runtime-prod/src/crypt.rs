//! Encryption at rest: the key file and AES-256-GCM (ring) as core's
//! [`WalCipher`].
//!
//! - **Key file** (`encryption.key_file`): 32 random bytes, either raw (a
//!   32-byte file) or as 64 hexadecimal digits (whitespace around them is
//!   ignored). `lockstep encryption init-key PATH` writes a new one in hex with
//!   mode 0600. Every member of a cluster may use the same key or its own.
//! - **Key id**: the first 8 bytes of SHA-256(`"lockstep encryption key id\0"`
//!   ‖ key), as 16 hex digits. It is written beside everything sealed, so a
//!   wrong key is reported as such, and it reveals nothing about the key.
//! - **Nonces**: a fresh random 96-bit nonce from the operating system's
//!   generator for every seal, stored in front of the ciphertext. With random
//!   nonces the chance of a repeat stays below 2^-32 for up to 2^32 seals
//!   under one key (NIST SP 800-38D); rotate the key well before that many
//!   WAL records (see `docs/security.md`).
//!
//! Sealed output: `nonce (12) ‖ ciphertext ‖ tag (16)`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use lockstep_core::wal::cipher::{Cipher, WalCipher};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

/// Length of a key.
pub const KEY_LEN: usize = 32;
/// Bytes a seal adds: the nonce and the tag.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + 16;

/// A key file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub why: String,
}

impl std::fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "encryption key file {}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for KeyFileError {}

/// AES-256-GCM with a key from a key file.
pub struct AesGcm {
    key: LessSafeKey,
    id: u64,
    random: SystemRandom,
}

impl std::fmt::Debug for AesGcm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AesGcm(key id {:016x})", self.id)
    }
}

/// The id of `key` (see the module doc).
pub fn key_id(key: &[u8; KEY_LEN]) -> u64 {
    let mut input = b"lockstep encryption key id\0".to_vec();
    input.extend_from_slice(key);
    let digest = ring::digest::digest(&ring::digest::SHA256, &input);
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(id)
}

/// The key in a key file's contents: 32 raw bytes, or 64 hex digits.
pub fn parse_key(contents: &[u8]) -> Result<[u8; KEY_LEN], String> {
    if contents.len() == KEY_LEN {
        let mut key = [0u8; KEY_LEN];
        key.copy_from_slice(contents);
        return Ok(key);
    }
    let text = std::str::from_utf8(contents)
        .map_err(|_| format!("{} bytes: want 32 raw bytes or 64 hex digits", contents.len()))?
        .trim();
    if text.len() != 2 * KEY_LEN || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{} bytes: want 32 raw bytes or 64 hex digits (lockstep encryption init-key writes one)",
            contents.len()
        ));
    }
    let mut key = [0u8; KEY_LEN];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(key)
}

impl AesGcm {
    /// The cipher of `key`.
    pub fn new(key: &[u8; KEY_LEN]) -> AesGcm {
        let unbound = UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte key is an AES-256 key");
        AesGcm { key: LessSafeKey::new(unbound), id: key_id(key), random: SystemRandom::new() }
    }

    /// The cipher of the key in `path`.
    pub fn load(path: &Path) -> Result<AesGcm, KeyFileError> {
        let error = |why: String| KeyFileError { path: path.to_path_buf(), why };
        let contents = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        let key = parse_key(&contents).map_err(error)?;
        Ok(AesGcm::new(&key))
    }

    /// The key in `path` as core's shared [`Cipher`].
    pub fn load_cipher(path: &Path) -> Result<Cipher, KeyFileError> {
        AesGcm::load(path).map(Cipher::new)
    }
}

impl WalCipher for AesGcm {
    fn key_id(&self) -> u64 {
        self.id
    }

    fn seal(&self, aad: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).expect("the operating system's random generator works");
        out.reserve(plain.len() + SEAL_OVERHEAD);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plain);
        let tag = self
            .key
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut out[start..])
            .expect("AES-GCM seals any record size lockstep writes");
        out.extend_from_slice(tag.as_ref());
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < SEAL_OVERHEAD {
            return None;
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = rest.to_vec();
        let plain_len = self.key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?.len();
        buffer.truncate(plain_len);
        Some(buffer)
    }
}

/// Writes a new random key to `path` as 64 hex digits and a newline, with
/// mode 0600; refuses to overwrite a file. Returns the key id.
pub fn init_key_file(path: &Path) -> Result<u64, KeyFileError> {
    let error = |why: String| KeyFileError { path: path.to_path_buf(), why };
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new().fill(&mut key).map_err(|_| error("the operating system's random generator failed".into()))?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            error("already exists; a key is never overwritten (the data written with it would be lost)".into())
        } else {
            error(e.to_string())
        }
    })?;
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    file.write_all(format!("{hex}\n").as_bytes()).map_err(|e| error(e.to_string()))?;
    file.sync_all().map_err(|e| error(e.to_string()))?;
    Ok(key_id(&key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_then_open_and_nothing_else_opens() {
        let cipher = AesGcm::new(&[7u8; KEY_LEN]);
        let mut sealed = Vec::new();
        cipher.seal(b"aad", b"the value", &mut sealed);
        assert_eq!(sealed.len(), 9 + SEAL_OVERHEAD);
        assert!(!sealed.windows(9).any(|w| w == b"the value"));
        assert_eq!(cipher.open(b"aad", &sealed).as_deref(), Some(&b"the value"[..]));
        assert_eq!(cipher.open(b"aae", &sealed), None);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x80;
            assert_eq!(cipher.open(b"aad", &bad), None, "byte {i}");
        }
        assert_eq!(AesGcm::new(&[8u8; KEY_LEN]).open(b"aad", &sealed), None);
        let mut again = Vec::new();
        cipher.seal(b"aad", b"the value", &mut again);
        assert_ne!(again, sealed, "a fresh nonce every time");
    }

    #[test]
    fn key_files_raw_or_hex() {
        let key: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8);
        assert_eq!(parse_key(&key), Ok(key));
        let hex: String = key.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_key(format!("  {hex}\n").as_bytes()), Ok(key));
        assert!(parse_key(b"abc").unwrap_err().contains("want 32 raw bytes or 64 hex digits"));
        assert!(parse_key(&[b'g'; 64]).is_err());
        assert_ne!(key_id(&key), key_id(&[0u8; KEY_LEN]));
    }

    #[test]
    fn init_key_writes_a_private_key_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lockstep.key");
        let id = init_key_file(&path).unwrap();
        assert_eq!(AesGcm::load(&path).unwrap().key_id(), id);
        assert!(init_key_file(&path).unwrap_err().why.contains("never overwritten"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }
}
