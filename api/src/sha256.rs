//! The checksum etcd appends to a `Maintenance/Snapshot` stream (etcdctl
//! checks that it is there): SHA-256 from the `sha2` crate.

use sha2::{Digest, Sha256};

/// The SHA-256 digest of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// `file` as etcd streams a snapshot: padded with zeros to a multiple of 512
/// bytes (etcdctl recognises the checksum by the size: `size % 512 == 32`),
/// then the SHA-256 of everything before it.
pub fn with_snapshot_checksum(mut file: Vec<u8>) -> Vec<u8> {
    let padded = file.len().div_ceil(512) * 512;
    file.resize(padded, 0);
    let digest = sha256(&file);
    file.extend_from_slice(&digest);
    file
}

/// The file inside a stream written by [`with_snapshot_checksum`] after
/// checking its checksum: the bytes before the zero padding are the caller's
/// to bound (its own header says how long the file is). `None` when the
/// size or the checksum is wrong.
pub fn strip_snapshot_checksum(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() % 512 != 32 {
        return None;
    }
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    (sha256(body) == digest).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn matches_the_standard_vectors() {
        assert_eq!(hex(&sha256(b"")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert_eq!(hex(&sha256(b"abc")), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(
            hex(&sha256(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn a_checksummed_file_round_trips_and_damage_is_found() {
        let file = vec![7u8; 1000];
        let mut stream = with_snapshot_checksum(file.clone());
        assert_eq!(stream.len() % 512, 32);
        assert_eq!(&strip_snapshot_checksum(&stream).unwrap()[..1000], &file[..]);
        stream[3] ^= 1;
        assert!(strip_snapshot_checksum(&stream).is_none());
    }
}
