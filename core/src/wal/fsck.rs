//! fsck: checks every record of every segment and the snapshot file, reports
//! each problem with its file and offset, and proposes the only repairs that can
//! never lose acknowledged data: cutting an incomplete write at the end of the
//! log, and deleting segments that the snapshot covers.

use crate::types::LogIndex;
use crate::wal::bytes::to_u64;
use crate::wal::cipher::{is_sealed_snapshot, open_snapshot_file, Cipher};
use crate::wal::error::WalError;
use crate::wal::identity::WalIdentity;
use crate::wal::record::Record;
use crate::wal::recover::{
    check_header, is_torn_creation, read_snapshot, recover_with_cipher, NamedSegment, RecoveryReport,
};
use crate::wal::scan::{resync, scan, Stop};
use crate::wal::segment::{SegmentHeader, SegmentId, SEGMENT_HEADER_LEN};
use crate::wal::snapshot_file::{SnapshotProblem, SNAPSHOT_FILE_NAME};
use crate::wal::writer::WalAction;

/// Whether fsck only checks or also proposes repairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsckMode {
    /// Check and report.
    Check,
    /// Check, report, and list the repairs (which the caller carries out).
    Repair,
}

/// What fsck found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckReport {
    /// One entry per file: the snapshot file first (if any), then the segments.
    pub files: Vec<FileCheck>,
    /// What recovery makes of the files as they are.
    pub recovery: Result<RecoveryReport, WalError>,
    /// The repairs, in the order to carry them out (only in [`FsckMode::Repair`]).
    pub repairs: Vec<RepairAction>,
    /// What recovery would make of the files after the repairs (only when there are repairs).
    pub after_repair: Option<Result<(), WalError>>,
}

/// One file's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    /// The file name.
    pub name: String,
    /// Its length.
    pub bytes: u64,
    /// Records read, including those after damage that fsck read on past.
    pub records: u64,
    /// Bytes from the start of the file up to the first problem (or the end of the
    /// records, where zero padding or the end of the file begins).
    pub valid_bytes: u64,
    /// Problems, in file order.
    pub problems: Vec<Problem>,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where it is.
    pub offset: u64,
    /// The record's position in the segment, when the problem is a record.
    pub record: Option<u64>,
    /// How bad it is.
    pub kind: ProblemKind,
    /// What is wrong.
    pub detail: String,
}

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Damage that recovery refuses to start with.
    Corruption,
    /// An incomplete write at the very end of the log, which recovery drops.
    Torn,
}

/// A repair that cannot lose acknowledged data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairAction {
    /// Cut an incomplete record off the end of the last segment.
    TruncateSegment {
        /// The segment.
        segment: SegmentId,
        /// Its new length.
        len: u64,
        /// Why this is safe.
        reason: String,
    },
    /// Delete a segment.
    DeleteSegment {
        /// The segment.
        segment: SegmentId,
        /// Why this is safe.
        reason: String,
    },
}

impl RepairAction {
    /// The same repair as a [`WalAction`] for a runtime to carry out.
    pub fn to_action(&self) -> WalAction {
        match self {
            RepairAction::TruncateSegment { segment, len, .. } => {
                WalAction::TruncateSegment { segment: *segment, len: *len }
            }
            RepairAction::DeleteSegment { segment, .. } => WalAction::DeleteSegments { segments: vec![*segment] },
        }
    }
}

impl FsckReport {
    /// True when no file has a problem and recovery succeeds.
    pub fn is_clean(&self) -> bool {
        self.recovery.is_ok() && self.files.iter().all(|f| f.problems.is_empty())
    }
}

impl std::fmt::Display for FsckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for file in &self.files {
            write!(
                f,
                "{}: {} bytes, {} records, {} valid bytes",
                file.name, file.bytes, file.records, file.valid_bytes
            )?;
            if file.problems.is_empty() {
                writeln!(f, ", ok")?;
            } else {
                writeln!(f)?;
            }
            for problem in &file.problems {
                let kind = match problem.kind {
                    ProblemKind::Corruption => "CORRUPT",
                    ProblemKind::Torn => "torn",
                };
                write!(f, "  {kind} at offset {}", problem.offset)?;
                if let Some(record) = problem.record {
                    write!(f, " (record #{record})")?;
                }
                writeln!(f, ": {}", problem.detail)?;
            }
        }
        match &self.recovery {
            Ok(report) => writeln!(f, "recovery: ok: {report}")?,
            Err(e) => writeln!(f, "recovery: FAILS: {e}")?,
        }
        for repair in &self.repairs {
            match repair {
                RepairAction::TruncateSegment { segment, len, reason } => {
                    writeln!(f, "repair: truncate {segment} to {len} bytes: {reason}")?
                }
                RepairAction::DeleteSegment { segment, reason } => writeln!(f, "repair: delete {segment}: {reason}")?,
            }
        }
        match &self.after_repair {
            Some(Ok(())) => writeln!(f, "after the repairs, recovery succeeds")?,
            Some(Err(e)) => writeln!(f, "after the repairs, recovery still fails: {}", e.message())?,
            None => {}
        }
        Ok(())
    }
}

/// Checks a member's WAL segments (`(file name, bytes)`, any order) and snapshot
/// file. Reads on past damage to report every problem; with
/// [`FsckMode::Repair`] lists the repairs that are safe and what recovery would
/// say after them. Pure: the caller carries the repairs out.
pub fn fsck<N: AsRef<str>, B: AsRef<[u8]>>(
    identity: &WalIdentity,
    segments: &[(N, B)],
    snapshot: Option<&[u8]>,
    mode: FsckMode,
) -> FsckReport {
    fsck_with_cipher(identity, segments, snapshot, mode, None)
}

/// [`fsck()`] of a WAL whose records and snapshot file may be sealed
/// (encryption at rest), opened with `cipher`. A sealed record that cannot be
/// opened (no key, another key, tampering) is reported as corruption at its
/// offset; it is never a torn tail, so no repair ever drops it.
pub fn fsck_with_cipher<N: AsRef<str>, B: AsRef<[u8]>>(
    identity: &WalIdentity,
    segments: &[(N, B)],
    snapshot: Option<&[u8]>,
    mode: FsckMode,
    cipher: Option<&Cipher>,
) -> FsckReport {
    let mut files = Vec::new();
    let snapshot_index = snapshot.and_then(|bytes| {
        let (check, index) = check_snapshot(identity, bytes, cipher);
        files.push(check);
        index
    });
    let mut ordered: Vec<(Option<SegmentId>, &str, &[u8])> =
        segments.iter().map(|(name, bytes)| (SegmentId::parse(name.as_ref()), name.as_ref(), bytes.as_ref())).collect();
    ordered.sort_by_key(|(id, name, _)| (id.map(|i| (i.seq, i.first_index)), *name));
    let mut checks = Vec::new();
    for (position, (id, name, bytes)) in ordered.iter().enumerate() {
        let last = position + 1 == ordered.len();
        checks.push(check_segment(identity, *id, name, bytes, last, cipher));
    }
    let recovery = recover_with_cipher(identity, segments, snapshot, cipher);
    let mut repairs = Vec::new();
    if mode == FsckMode::Repair {
        repairs.extend(covered_repairs(&checks, snapshot_index));
        if let Some(check) = checks.last() {
            repairs.extend(check.tail_repair.clone());
        }
    }
    let after_repair = (!repairs.is_empty()).then(|| {
        let repaired = apply_repairs(segments, &repairs);
        recover_with_cipher(identity, &repaired, snapshot, cipher).map(|_| ())
    });
    files.extend(checks.into_iter().map(|c| c.file));
    FsckReport { files, recovery, repairs, after_repair }
}

struct SegmentCheck {
    file: FileCheck,
    id: Option<SegmentId>,
    header: Option<SegmentHeader>,
    tail_repair: Option<RepairAction>,
    /// Whether a valid hard state record was read.
    holds_hard_state: bool,
}

fn check_snapshot(identity: &WalIdentity, bytes: &[u8], cipher: Option<&Cipher>) -> (FileCheck, Option<LogIndex>) {
    let mut file = FileCheck {
        name: SNAPSHOT_FILE_NAME.to_string(),
        bytes: to_u64(bytes.len()),
        records: 0,
        valid_bytes: 0,
        problems: Vec::new(),
    };
    let opened = if is_sealed_snapshot(bytes) {
        match open_snapshot_file(cipher, bytes) {
            Ok(plain) => Some(plain),
            Err(problem) => {
                let detail = format!("unreadable snapshot: {}", SnapshotProblem::Sealed(problem));
                file.problems.push(Problem { offset: 0, record: None, kind: ProblemKind::Corruption, detail });
                return (file, None);
            }
        }
    } else {
        None
    };
    match read_snapshot(identity, opened.as_deref().unwrap_or(bytes)) {
        Ok(snapshot) => {
            file.records = 1;
            file.valid_bytes = file.bytes;
            (file, Some(snapshot.meta.index))
        }
        Err(problem) => {
            let detail = format!("unreadable snapshot: {problem}");
            file.problems.push(Problem { offset: 0, record: None, kind: ProblemKind::Corruption, detail });
            (file, None)
        }
    }
}

fn check_segment(
    identity: &WalIdentity,
    id: Option<SegmentId>,
    name: &str,
    bytes: &[u8],
    last: bool,
    cipher: Option<&Cipher>,
) -> SegmentCheck {
    let mut file = FileCheck {
        name: name.to_string(),
        bytes: to_u64(bytes.len()),
        records: 0,
        valid_bytes: 0,
        problems: Vec::new(),
    };
    let corruption = |offset, record, detail| Problem { offset, record, kind: ProblemKind::Corruption, detail };
    let Some(id) = id else {
        file.problems.push(corruption(0, None, "not a WAL segment file name".to_string()));
        return SegmentCheck { file, id, header: None, tail_repair: None, holds_hard_state: false };
    };
    let header = match SegmentHeader::decode(bytes) {
        Ok(header) => {
            if let Err(e) = check_header(identity, &NamedSegment { id, name, bytes }, &header) {
                file.problems.push(corruption(0, None, e.message()));
            }
            Some(header)
        }
        Err(problem) if last && is_torn_creation(&problem, bytes) => {
            let detail = format!("incomplete segment header ({problem}) and nothing after it: creation cut short");
            file.problems.push(Problem { offset: 0, record: None, kind: ProblemKind::Torn, detail });
            let reason = "the last segment's creation was cut short; nothing in it was ever synced".to_string();
            let tail_repair = Some(RepairAction::DeleteSegment { segment: id, reason });
            return SegmentCheck { file, id: Some(id), header: None, tail_repair, holds_hard_state: false };
        }
        Err(problem) => {
            file.problems.push(corruption(0, None, format!("unreadable segment header: {problem}")));
            None
        }
    };
    let mut tail_repair = None;
    let mut holds_hard_state = false;
    let mut at = SEGMENT_HEADER_LEN;
    let mut first_problem = None;
    loop {
        let (records, stop) = scan(bytes, at, header.map(|h| h.block_size), cipher);
        file.records += to_u64(records.len());
        holds_hard_state |= records.iter().any(|r| matches!(r.record, Record::HardState(_)));
        match stop {
            Stop::End { at } => {
                first_problem.get_or_insert(at);
                break;
            }
            Stop::Torn { at, reason } => {
                first_problem.get_or_insert(at);
                if last {
                    let detail = format!("incomplete final record: {reason}");
                    file.problems.push(Problem {
                        offset: at,
                        record: Some(file.records),
                        kind: ProblemKind::Torn,
                        detail,
                    });
                    let reason = "an incomplete record at the end of the log was never synced".to_string();
                    tail_repair = Some(RepairAction::TruncateSegment { segment: id, len: at, reason });
                } else {
                    let detail = format!("incomplete record in a segment that is not the last: {reason}");
                    file.problems.push(corruption(at, Some(file.records), detail));
                }
                break;
            }
            Stop::Damaged { at: damaged, problem, resume } => {
                first_problem.get_or_insert(damaged);
                file.problems.push(corruption(damaged, Some(file.records), problem.to_string()));
                let from = usize::try_from(damaged).unwrap_or(usize::MAX);
                let next = match resume {
                    Some(next) => usize::try_from(next).ok(),
                    None => resync(bytes, from.saturating_add(1)),
                };
                file.records += 1;
                match next {
                    Some(next) if next > from => at = next,
                    _ => {
                        if resume.is_none() {
                            let detail = "no valid record follows; the rest of the file is unreadable".to_string();
                            file.problems.push(corruption(damaged, None, detail));
                        }
                        break;
                    }
                }
            }
        }
    }
    file.valid_bytes = first_problem.unwrap_or(0);
    if file.problems.first().is_some_and(|p| p.offset == 0) {
        file.valid_bytes = 0;
    }
    SegmentCheck { file, id: Some(id), header, tail_repair, holds_hard_state }
}

/// Deletes the oldest segments that the snapshot covers, if any of them is damaged.
fn covered_repairs(checks: &[SegmentCheck], snapshot_index: Option<LogIndex>) -> Vec<RepairAction> {
    let Some(snapshot_index) = snapshot_index else {
        return Vec::new();
    };
    let mut covered = 0;
    for pair in checks.windows(2) {
        let (Some(a), Some(b)) = (pair[0].id, pair[1].header.map(|h| h.id)) else {
            break;
        };
        if pair[1].id != Some(b)
            || a.seq.checked_add(1) != Some(b.seq)
            || b.first_index.saturating_sub(1) > snapshot_index
        {
            break;
        }
        covered += 1;
    }
    let Some(damaged) = checks[..covered].iter().rposition(|c| !c.file.problems.is_empty()) else {
        return Vec::new();
    };
    // The hard state must survive in a later segment (new segments start with it,
    // but a torn tail may have cut that copy off before the writer restated it).
    if !checks[damaged + 1..].iter().any(|c| c.holds_hard_state) {
        return Vec::new();
    }
    checks[..=damaged]
        .iter()
        .filter_map(|c| c.id)
        .map(|segment| RepairAction::DeleteSegment {
            segment,
            reason: format!("the snapshot at index {snapshot_index} covers every live entry in it"),
        })
        .collect()
}

fn apply_repairs<'a, N: AsRef<str>, B: AsRef<[u8]>>(
    segments: &'a [(N, B)],
    repairs: &[RepairAction],
) -> Vec<(String, &'a [u8])> {
    let mut out = Vec::new();
    for (name, bytes) in segments {
        let (name, mut bytes) = (name.as_ref(), bytes.as_ref());
        let id = SegmentId::parse(name);
        let mut deleted = false;
        for repair in repairs {
            match repair {
                RepairAction::DeleteSegment { segment, .. } if Some(*segment) == id => deleted = true,
                RepairAction::TruncateSegment { segment, len, .. } if Some(*segment) == id => {
                    bytes = &bytes[..usize::try_from(*len).unwrap_or(usize::MAX).min(bytes.len())];
                }
                _ => {}
            }
        }
        if !deleted {
            out.push((name.to_string(), bytes));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_directory_is_clean() {
        let identity = WalIdentity { cluster_id: 1, member_id: 1, group_id: 1 };
        let none: [(String, Vec<u8>); 0] = [];
        let report = fsck(&identity, &none, None, FsckMode::Repair);
        assert!(report.is_clean(), "{report}");
        assert!(report.repairs.is_empty());
    }
}
