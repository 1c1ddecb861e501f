//! The identity file: which cluster, member and Raft group a data directory belongs to.
//!
//! A short text file, so that an operator can read it with `cat`, with a CRC32C on
//! its last line, so that a damaged or hand-edited file is refused instead of
//! silently making the member someone else:
//!
//! ```text
//! # lockstep member identity: the cluster, member and Raft group this data directory belongs to.
//! # Written once when the member is created. Do not edit: the last line checksums the lines above it.
//! format 1
//! cluster_id 7046029254386353131
//! member_id 2
//! group_id 1
//! crc32c 0xc80e1669
//! ```
//!
//! Lines starting with `#` are comments (still covered by the checksum). The other
//! lines are `key value`, each key exactly once; `format` comes first. The last
//! line is `crc32c 0x` and eight lower-case hex digits: the CRC32C of every byte
//! before that line. Numbers are decimal `u64`.

use lockstep_core::wal::WalIdentity;

/// The identity file's name in a data directory.
pub const IDENTITY_FILE_NAME: &str = "identity";
/// The name the identity file is written under before it is renamed into place.
pub const IDENTITY_TEMP_FILE_NAME: &str = "identity.tmp";
/// The identity file format this build writes and reads.
pub const IDENTITY_FORMAT_VERSION: u32 = 1;
/// An identity file longer than this is refused without being parsed.
pub const IDENTITY_FILE_LEN_MAX: u64 = 4096;

const HEADER_COMMENT: &str = "# lockstep member identity: the cluster, member and Raft group this data directory \
belongs to.\n# Written once when the member is created. Do not edit: the last line checksums the lines above it.\n";
const CHECKSUM_KEY: &str = "crc32c";

/// Why an identity file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityProblem {
    /// Longer than [`IDENTITY_FILE_LEN_MAX`].
    TooLong {
        /// The file's length.
        len: u64,
    },
    /// Not UTF-8 text.
    NotText,
    /// The last line is not a `crc32c 0x…` line (the file was cut short or edited).
    NoChecksum,
    /// The checksum does not match the lines above it.
    BadChecksum {
        /// The checksum on the last line.
        stored: u32,
        /// The checksum of the bytes before it.
        actual: u32,
    },
    /// The first key is not `format`, or a line is not `key value`.
    Malformed {
        /// The line number (1 is the first).
        line: u32,
        /// What is wrong.
        detail: String,
    },
    /// Written in a format version this build cannot read.
    UnsupportedVersion(u32),
    /// A required key is missing.
    Missing(&'static str),
}

impl std::fmt::Display for IdentityProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentityProblem::TooLong { len } => {
                write!(f, "the file is {len} bytes long; an identity file is at most {IDENTITY_FILE_LEN_MAX}")
            }
            IdentityProblem::NotText => write!(f, "the file is not UTF-8 text"),
            IdentityProblem::NoChecksum => {
                write!(f, "the last line is not a `{CHECKSUM_KEY} 0x........` line (cut short or edited by hand)")
            }
            IdentityProblem::BadChecksum { stored, actual } => write!(
                f,
                "checksum mismatch: the file says {stored:#010x}, its contents give {actual:#010x} (damaged or \
                 edited by hand)"
            ),
            IdentityProblem::Malformed { line, detail } => write!(f, "line {line}: {detail}"),
            IdentityProblem::UnsupportedVersion(v) => write!(
                f,
                "identity format {v} is not supported (this build reads format {IDENTITY_FORMAT_VERSION}); run \
                 the lockstep release that wrote it, or a newer one"
            ),
            IdentityProblem::Missing(key) => write!(f, "the key `{key}` is missing"),
        }
    }
}

/// The identity file's bytes.
pub fn encode_identity(identity: &WalIdentity) -> Vec<u8> {
    let mut text = String::from(HEADER_COMMENT);
    text.push_str(&format!("format {IDENTITY_FORMAT_VERSION}\n"));
    text.push_str(&format!("cluster_id {}\n", identity.cluster_id));
    text.push_str(&format!("member_id {}\n", identity.member_id));
    text.push_str(&format!("group_id {}\n", identity.group_id));
    let crc = crc32c::crc32c(text.as_bytes());
    text.push_str(&format!("{CHECKSUM_KEY} {crc:#010x}\n"));
    text.into_bytes()
}

/// Reads an identity file written by [`encode_identity`] (or by a person who kept
/// its checksum right). Never panics on hostile bytes.
pub fn decode_identity(bytes: &[u8]) -> Result<WalIdentity, IdentityProblem> {
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > IDENTITY_FILE_LEN_MAX {
        return Err(IdentityProblem::TooLong { len });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| IdentityProblem::NotText)?;
    let body_text = text.strip_suffix('\n').ok_or(IdentityProblem::NoChecksum)?;
    let (body, checksum_line) = match body_text.rfind('\n') {
        Some(at) => (&text[..=at], &body_text[at + 1..]),
        None => ("", body_text),
    };
    let stored = checksum_line
        .strip_prefix(CHECKSUM_KEY)
        .and_then(|rest| rest.strip_prefix(" 0x"))
        .filter(|hex| hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
        .and_then(|hex| u32::from_str_radix(hex, 16).ok())
        .ok_or(IdentityProblem::NoChecksum)?;
    let actual = crc32c::crc32c(body.as_bytes());
    if stored != actual {
        return Err(IdentityProblem::BadChecksum { stored, actual });
    }
    let (mut format, mut cluster_id, mut member_id, mut group_id) = (None, None, None, None);
    for (number, line) in (1u32..).zip(body.lines()) {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let malformed = |detail: String| IdentityProblem::Malformed { line: number, detail };
        let (key, value) =
            line.split_once(' ').ok_or_else(|| malformed(format!("expected `key value`, found {line:?}")))?;
        let value: u64 =
            value.parse().map_err(|_| malformed(format!("`{key}` needs a decimal number, found {value:?}")))?;
        if format.is_none() && key != "format" {
            return Err(malformed(format!("the first key must be `format`, found `{key}`")));
        }
        let slot = match key {
            "format" => {
                let version = u32::try_from(value).unwrap_or(u32::MAX);
                if version != IDENTITY_FORMAT_VERSION {
                    return Err(IdentityProblem::UnsupportedVersion(version));
                }
                &mut format
            }
            "cluster_id" => &mut cluster_id,
            "member_id" => &mut member_id,
            "group_id" => &mut group_id,
            _ => return Err(malformed(format!("unknown key `{key}` (written by a newer lockstep?)"))),
        };
        if slot.replace(value).is_some() {
            return Err(malformed(format!("`{key}` appears twice")));
        }
    }
    format.ok_or(IdentityProblem::Missing("format"))?;
    Ok(WalIdentity {
        cluster_id: cluster_id.ok_or(IdentityProblem::Missing("cluster_id"))?,
        member_id: member_id.ok_or(IdentityProblem::Missing("member_id"))?,
        group_id: group_id.ok_or(IdentityProblem::Missing("group_id"))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: WalIdentity = WalIdentity { cluster_id: 7_046_029_254_386_353_131, member_id: 2, group_id: 1 };

    fn with_checksum(body: &str) -> Vec<u8> {
        let crc = crc32c::crc32c(body.as_bytes());
        format!("{body}{CHECKSUM_KEY} {crc:#010x}\n").into_bytes()
    }

    #[test]
    fn round_trip_and_readable() {
        let bytes = encode_identity(&ID);
        assert_eq!(decode_identity(&bytes), Ok(ID));
        let text = String::from_utf8(bytes).expect("text");
        assert!(text.contains("\nmember_id 2\n"), "{text}");
        assert!(text.lines().last().is_some_and(|l| l.starts_with("crc32c 0x")), "{text}");
    }

    #[test]
    fn every_bit_flip_and_every_cut_is_refused() {
        let bytes = encode_identity(&ID);
        for bit in 0..bytes.len() * 8 {
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_identity(&bad).is_err(), "bit {bit}");
        }
        for cut in 0..bytes.len() {
            assert!(decode_identity(&bytes[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn semantic_checks_after_the_checksum() {
        let cases: [(&str, IdentityProblem); 5] = [
            ("format 2\ncluster_id 1\nmember_id 1\ngroup_id 1\n", IdentityProblem::UnsupportedVersion(2)),
            ("format 1\ncluster_id 1\nmember_id 1\n", IdentityProblem::Missing("group_id")),
            (
                "cluster_id 1\nformat 1\n",
                IdentityProblem::Malformed {
                    line: 1,
                    detail: "the first key must be `format`, found `cluster_id`".into(),
                },
            ),
            (
                "format 1\ncluster_id 1\ncluster_id 2\n",
                IdentityProblem::Malformed { line: 3, detail: "`cluster_id` appears twice".into() },
            ),
            (
                "format 1\nnode 1\n",
                IdentityProblem::Malformed {
                    line: 2,
                    detail: "unknown key `node` (written by a newer lockstep?)".into(),
                },
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(decode_identity(&with_checksum(body)), Err(expected), "{body}");
        }
        assert_eq!(
            decode_identity(&with_checksum("# hand-made\nformat 1\ncluster_id 3\nmember_id 4\ngroup_id 5\n")),
            Ok(WalIdentity { cluster_id: 3, member_id: 4, group_id: 5 })
        );
        assert_eq!(decode_identity(&[0xff; 10]), Err(IdentityProblem::NotText));
        assert_eq!(decode_identity(&[b'#'; 5000]), Err(IdentityProblem::TooLong { len: 5000 }));
    }
}
