//! `lockstep version`: the build and the on-disk and wire format versions it reads and writes.

use serde::Serialize;

use crate::data_dir::LAYOUT_VERSION;
use crate::identity::IDENTITY_FORMAT_VERSION;

/// What `lockstep version` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    /// The crate version, e.g. `0.1.0`.
    pub version: &'static str,
    /// The git commit the binary was built from, if the build knew it.
    pub git_commit: Option<&'static str>,
    /// The data directory layout (`crate::data_dir`).
    pub data_dir_layout: u32,
    /// The identity file format.
    pub identity_format: u32,
    /// The WAL segment format (header and records).
    pub wal_segment_format: u32,
    /// The snapshot file format.
    pub snapshot_file_format: u32,
    /// The codec frame format of messages, entries, hard states and snapshot metadata.
    pub codec_format: u8,
}

impl VersionInfo {
    /// This build's versions.
    pub fn current() -> VersionInfo {
        VersionInfo {
            version: env!("CARGO_PKG_VERSION"),
            git_commit: option_env!("LOCKSTEP_GIT_COMMIT"),
            data_dir_layout: LAYOUT_VERSION,
            identity_format: IDENTITY_FORMAT_VERSION,
            wal_segment_format: lockstep_core::wal::SEGMENT_FORMAT_VERSION,
            snapshot_file_format: lockstep_core::wal::snapshot_file::SNAPSHOT_FORMAT_VERSION,
            codec_format: lockstep_core::codec::FORMAT_VERSION,
        }
    }

    /// The report for a person.
    pub fn render_human(&self) -> String {
        format!(
            "lockstep {}\ngit commit:            {}\ndata directory layout: {}\nidentity file format:  {}\n\
             WAL segment format:    {}\nsnapshot file format:  {}\ncodec frame format:    {}\n",
            self.version,
            self.git_commit.unwrap_or("unknown"),
            self.data_dir_layout,
            self.identity_format,
            self.wal_segment_format,
            self.snapshot_file_format,
            self.codec_format
        )
    }
}
