//! `lockstep fsck`: reads a data directory, runs core's pure [`lockstep_core::wal::fsck()`]
//! over its files, carries out the repairs core proposes (when asked), re-checks
//! from disk, and describes all of it for a person ([`FsckOutcome::render_human`])
//! or a program (`serde_json` of [`FsckOutcome`]).

use std::fmt::Write as _;
use std::path::Path;

use lockstep_core::wal::error::DAMAGE_ADVICE;
use lockstep_core::wal::{
    fsck_with_cipher, Cipher, FileCheck, FsckMode, FsckReport, ProblemKind, RepairAction, WalError, WalIdentity,
    SNAPSHOT_FILE_NAME, SNAPSHOT_TEMP_FILE_NAME,
};
use serde::Serialize;

use crate::data_dir::{DataDir, DataDirError, Listing, LockMode, STATE_DIR_NAME, WAL_DIR_NAME};

/// What fsck should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FsckOptions {
    /// Carry out the repairs core proposes (only if recovery succeeds after them).
    pub repair: bool,
}

/// Where fsck is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressEvent {
    /// Reading starts: this many files, this many bytes in all.
    Reading {
        /// Segment and snapshot files.
        files: u64,
        /// Their bytes.
        bytes: u64,
    },
    /// This many more bytes were read.
    Read(u64),
    /// Reading is done; the (pure, CPU-bound) check runs.
    Checking,
    /// The check is done.
    Done,
}

/// The verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FsckStatus {
    /// No problem found; recovery succeeds.
    Clean,
    /// Problems were found (and not all of them were repaired).
    Problems,
    /// Problems were found, repaired, and a re-check from disk found none.
    Repaired,
}

impl FsckStatus {
    /// The process exit code: 0 clean or repaired, 1 problems remain.
    pub fn exit_code(self) -> u8 {
        match self {
            FsckStatus::Clean | FsckStatus::Repaired => 0,
            FsckStatus::Problems => 1,
        }
    }
}

/// The member identity, as printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdentityView {
    /// The cluster's id.
    pub cluster_id: u64,
    /// The member's id.
    pub member_id: u64,
    /// The Raft group's id.
    pub group_id: u64,
}

impl From<WalIdentity> for IdentityView {
    fn from(id: WalIdentity) -> Self {
        IdentityView { cluster_id: id.cluster_id, member_id: id.member_id, group_id: id.group_id }
    }
}

/// One file's check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileView {
    /// The path relative to the data directory (`wal/...`).
    pub path: String,
    /// Its length.
    pub bytes: u64,
    /// Records read (0 for the snapshot file).
    pub records: u64,
    /// Bytes up to the first problem or the end of the records.
    pub valid_bytes: u64,
    /// `ok`, `torn` or `corrupt`.
    pub status: &'static str,
    /// Problems, in file order.
    pub problems: Vec<ProblemView>,
}

/// One problem in one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProblemView {
    /// Byte offset in the file.
    pub offset: u64,
    /// The record's position in the segment (0 is the first), if it is a record.
    pub record: Option<u64>,
    /// `torn` (an unfinished write at the end of the log) or `corruption`.
    pub kind: &'static str,
    /// What is wrong.
    pub detail: String,
    /// What to do.
    pub advice: String,
}

/// What recovery (a member starting) makes of the files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryView {
    /// Whether a member would start on these files.
    pub ok: bool,
    /// What it would recover (when `ok`).
    pub summary: Option<String>,
    /// Why it would refuse to start (when not `ok`).
    pub error: Option<String>,
    /// The file the error is about.
    pub file: Option<String>,
    /// The byte offset the error is about.
    pub offset: Option<u64>,
    /// What to do about the error.
    pub advice: Option<String>,
}

/// A repair core proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RepairView {
    /// `truncate` or `delete`.
    pub action: &'static str,
    /// The file, relative to the data directory.
    pub path: String,
    /// Its length before.
    pub bytes_before: u64,
    /// Its length after (`None` when deleted).
    pub bytes_after: Option<u64>,
    /// Why it cannot lose acknowledged data.
    pub reason: String,
    /// Whether it was carried out (and fsynced).
    pub applied: bool,
}

/// The re-check from disk after repairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecheckView {
    /// Whether the directory is clean now.
    pub clean: bool,
    /// Problems still found.
    pub problems: u64,
    /// Why recovery still fails, if it does.
    pub recovery_error: Option<String>,
}

/// Counts over every file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Totals {
    /// Files checked (segments and the snapshot file).
    pub files: u64,
    /// Records read.
    pub records: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Torn-tail problems.
    pub torn: u64,
    /// Corruption problems.
    pub corrupt: u64,
}

/// Everything fsck found and did; serialises as the `--output json` document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FsckOutcome {
    /// The data directory as given.
    pub data_dir: String,
    /// The member identity from the identity file.
    pub identity: IdentityView,
    /// `check` or `repair`.
    pub mode: &'static str,
    /// Per file, the snapshot file first, then the segments in order.
    pub files: Vec<FileView>,
    /// Counts.
    pub totals: Totals,
    /// What a member starting on these files would do.
    pub recovery: RecoveryView,
    /// The repairs core proposes (carried out only with `--repair`).
    pub repairs: Vec<RepairView>,
    /// Why proposed repairs were not carried out, if they were not.
    pub repairs_withheld: Option<String>,
    /// The re-check from disk after repairs (only when repairs were carried out).
    pub recheck: Option<RecheckView>,
    /// Things worth knowing that are not problems.
    pub notes: Vec<String>,
    /// The verdict.
    pub status: FsckStatus,
    /// The process exit code (0 clean or repaired, 1 problems remain).
    pub exit_code: u8,
}

/// Checks (and with `options.repair` repairs) the data directory at `root`.
/// `Err` means fsck could not run (exit code 2): the directory is missing, not a
/// data directory, locked by a running member, or unreadable.
pub fn fsck_data_dir(
    root: &Path,
    options: FsckOptions,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<FsckOutcome, DataDirError> {
    fsck_data_dir_with_cipher(root, options, None, progress)
}

/// [`fsck_data_dir`] of a member with encryption at rest: sealed records and
/// snapshot files are opened with `cipher`. Without it (or with another key)
/// every sealed record is reported as unreadable, naming the key id it needs,
/// and nothing is repaired.
pub fn fsck_data_dir_with_cipher(
    root: &Path,
    options: FsckOptions,
    cipher: Option<&Cipher>,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<FsckOutcome, DataDirError> {
    let dir = DataDir::open(root)?;
    let mode = if options.repair { LockMode::Exclusive } else { LockMode::SharedIfPresent };
    let _lock = dir.lock(mode)?;
    let listing = dir.list()?;
    let files = read_files(&dir, &listing, progress)?;
    progress(ProgressEvent::Checking);
    // Always ask for the repairs: a plain check says what `--repair` would do.
    let report =
        fsck_with_cipher(&dir.identity(), &files.segments, files.snapshot.as_deref(), FsckMode::Repair, cipher);
    progress(ProgressEvent::Done);
    let mut outcome = describe(root, &dir, &listing, &report, options);
    // Repairs are carried out only if recovery succeeds after them (core lists none
    // when there is nothing to repair); otherwise describe() has said why not.
    if options.repair && matches!(report.after_repair, Some(Ok(()))) {
        for (repair, view) in report.repairs.iter().zip(outcome.repairs.iter_mut()) {
            dir.apply(&repair.to_action())?;
            view.applied = true;
        }
        dir.sync_wal_dir()?;
        let listing = dir.list()?;
        let files = read_files(&dir, &listing, &mut |_| {})?;
        let again =
            fsck_with_cipher(&dir.identity(), &files.segments, files.snapshot.as_deref(), FsckMode::Check, cipher);
        let problems = again.files.iter().map(|f| u64::try_from(f.problems.len()).unwrap_or(0)).sum();
        outcome.recheck = Some(RecheckView {
            clean: again.is_clean(),
            problems,
            recovery_error: again.recovery.as_ref().err().map(WalError::message),
        });
    }
    outcome.status = match (&outcome.recheck, report.is_clean()) {
        (_, true) => FsckStatus::Clean,
        (Some(recheck), false) if recheck.clean => FsckStatus::Repaired,
        _ => FsckStatus::Problems,
    };
    outcome.exit_code = outcome.status.exit_code();
    Ok(outcome)
}

struct Files {
    segments: Vec<(String, Vec<u8>)>,
    snapshot: Option<Vec<u8>>,
}

fn read_files(
    dir: &DataDir,
    listing: &Listing,
    progress: &mut dyn FnMut(ProgressEvent),
) -> Result<Files, DataDirError> {
    let count = listing.segments.len() + usize::from(listing.snapshot.is_some());
    progress(ProgressEvent::Reading { files: u64::try_from(count).unwrap_or(u64::MAX), bytes: listing.total_bytes() });
    let mut on_chunk = |n| progress(ProgressEvent::Read(n));
    let snapshot = match listing.snapshot {
        Some(_) => Some(dir.read_wal_file(SNAPSHOT_FILE_NAME, &mut on_chunk)?),
        None => None,
    };
    let mut segments = Vec::with_capacity(listing.segments.len());
    for (name, _) in &listing.segments {
        segments.push((name.clone(), dir.read_wal_file(name, &mut on_chunk)?));
    }
    Ok(Files { segments, snapshot })
}

fn wal_path(name: &str) -> String {
    format!("{WAL_DIR_NAME}/{name}")
}

/// Quotes a path for a shell command line when it needs it.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:,=@".contains(&b));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// Splits a [`WalError`]'s `Display` (message, then advice) into the advice alone.
fn advice_of(error: &WalError) -> String {
    let full = error.to_string();
    let message = error.message();
    let advice = full.strip_prefix(&message).and_then(|rest| rest.strip_prefix(". ")).unwrap_or(DAMAGE_ADVICE);
    without_fsck_hint(advice)
}

/// Core's advice for damage starts by telling the operator to run fsck, which is
/// what they are doing: drop that sentence here.
fn without_fsck_hint(advice: &str) -> String {
    advice
        .strip_prefix("Run `lockstep fsck`")
        .and_then(|rest| rest.find(". ").map(|end| rest[end + 2..].to_string()))
        .unwrap_or_else(|| advice.to_string())
}

fn describe(root: &Path, dir: &DataDir, listing: &Listing, report: &FsckReport, options: FsckOptions) -> FsckOutcome {
    let data_dir = root.display().to_string();
    let repair_command = format!("lockstep fsck --repair {}", shell_quote(&data_dir));
    let general_advice = match &report.recovery {
        Err(e) => advice_of(e),
        Ok(_) => without_fsck_hint(DAMAGE_ADVICE),
    };
    let repair_for = |name: &str| {
        report.repairs.iter().find(|r| match r {
            RepairAction::TruncateSegment { segment, .. } | RepairAction::DeleteSegment { segment, .. } => {
                segment.file_name() == name
            }
        })
    };
    let mut totals = Totals::default();
    let files: Vec<FileView> = report
        .files
        .iter()
        .map(|file: &FileCheck| {
            totals.files += 1;
            totals.records += file.records;
            totals.bytes += file.bytes;
            let repair = repair_for(&file.name);
            let problems: Vec<ProblemView> = file
                .problems
                .iter()
                .map(|problem| {
                    let torn = problem.kind == ProblemKind::Torn;
                    if torn {
                        totals.torn += 1;
                    } else {
                        totals.corrupt += 1;
                    }
                    let advice = match (torn, repair) {
                        (true, Some(_)) if matches!(report.after_repair, Some(Err(_))) => {
                            "safe to drop (it was never synced), but that alone does not let a member start: see \
                             the other problems"
                                .to_string()
                        }
                        (true, Some(_)) => format!(
                            "safe to drop: an unfinished write at the end of the log was never synced, so nothing \
                             acknowledged depends on it. A starting member drops it by itself; `{repair_command}` \
                             cuts it now"
                        ),
                        (false, Some(RepairAction::DeleteSegment { .. })) => format!(
                            "the snapshot covers every live entry in this segment: `{repair_command}` deletes it"
                        ),
                        _ => general_advice.clone(),
                    };
                    ProblemView {
                        offset: problem.offset,
                        record: problem.record,
                        kind: if torn { "torn" } else { "corruption" },
                        detail: problem.detail.clone(),
                        advice,
                    }
                })
                .collect();
            let status = if problems.is_empty() {
                "ok"
            } else if problems.iter().all(|p| p.kind == "torn") {
                "torn"
            } else {
                "corrupt"
            };
            FileView {
                path: wal_path(&file.name),
                bytes: file.bytes,
                records: file.records,
                valid_bytes: file.valid_bytes,
                status,
                problems,
            }
        })
        .collect();
    let recovery = match &report.recovery {
        Ok(recovered) => RecoveryView {
            ok: true,
            summary: Some(recovered.to_string()),
            error: None,
            file: None,
            offset: None,
            advice: None,
        },
        Err(e) => RecoveryView {
            ok: false,
            summary: None,
            error: Some(e.message()),
            file: e.file().map(wal_path),
            offset: e.offset(),
            advice: Some(advice_of(e)),
        },
    };
    let size_of = |name: &str| listing.segments.iter().find(|(n, _)| n == name).map_or(0, |(_, len)| *len);
    let repairs = report
        .repairs
        .iter()
        .map(|repair| match repair {
            RepairAction::TruncateSegment { segment, len, reason } => RepairView {
                action: "truncate",
                path: wal_path(&segment.file_name()),
                bytes_before: size_of(&segment.file_name()),
                bytes_after: Some(*len),
                reason: reason.clone(),
                applied: false,
            },
            RepairAction::DeleteSegment { segment, reason } => RepairView {
                action: "delete",
                path: wal_path(&segment.file_name()),
                bytes_before: size_of(&segment.file_name()),
                bytes_after: None,
                reason: reason.clone(),
                applied: false,
            },
        })
        .collect();
    let mut notes = Vec::new();
    if listing.segments.is_empty() && listing.snapshot.is_none() {
        notes.push(
            "the WAL directory is empty: a member starting here starts blank (right for a member that never \
             ran; wrong for one that did, whose log was lost)"
                .to_string(),
        );
    }
    if let Some(len) = listing.snapshot_temp {
        notes.push(format!(
            "{} ({len} bytes) is a snapshot whose writing was interrupted; it is ignored, and safe to delete",
            wal_path(SNAPSHOT_TEMP_FILE_NAME)
        ));
    }
    for name in &listing.unexpected {
        notes.push(format!("{} is not a lockstep file; it was not checked", wal_path(name)));
    }
    if listing.state_dir {
        notes.push(format!(
            "{STATE_DIR_NAME}/ (the state machine's store) was not checked: this build has no checker for it; a \
             member checks at start that it reaches the snapshot's checkpoint"
        ));
    }
    let repairs_withheld = report.after_repair.as_ref().and_then(|after| after.as_ref().err()).map(|e| {
        let why = match &report.recovery {
            Err(before) if before.message() == e.message() => "the problem recovery reports above".to_string(),
            _ => e.message(),
        };
        let what = if options.repair { "nothing was changed" } else { "`--repair` will not carry them out" };
        format!(
            "{what}: even after them a member could not start ({why}), so the directory is left exactly as it \
             is, for examination or restore"
        )
    });
    FsckOutcome {
        data_dir,
        identity: dir.identity().into(),
        mode: if options.repair { "repair" } else { "check" },
        files,
        totals,
        recovery,
        repairs,
        repairs_withheld,
        recheck: None,
        notes,
        status: FsckStatus::Problems,
        exit_code: FsckStatus::Problems.exit_code(),
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl FsckOutcome {
    /// The report for a person.
    pub fn render_human(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_human(&mut out);
        out
    }

    fn write_human(&self, out: &mut String) -> std::fmt::Result {
        let id = &self.identity;
        writeln!(
            out,
            "lockstep fsck {} (cluster {}, member {}, group {})",
            self.data_dir, id.cluster_id, id.member_id, id.group_id
        )?;
        let width = self.files.iter().map(|f| f.path.len()).max().unwrap_or(0);
        for file in &self.files {
            let status = match file.status {
                "ok" => "ok",
                "torn" => "TORN TAIL",
                _ => "CORRUPT",
            };
            let records = if file.path.ends_with(SNAPSHOT_FILE_NAME) {
                "snapshot".to_string()
            } else {
                format!("{:>9} records", file.records)
            };
            writeln!(out, "  {:width$}  {:>12} bytes  {records:>17}  {status}", file.path, file.bytes)?;
            for problem in &file.problems {
                let kind = if problem.kind == "torn" { "torn" } else { "corrupt" };
                write!(out, "    {kind} at byte offset {}", problem.offset)?;
                if let Some(record) = problem.record {
                    write!(out, " (record #{record})")?;
                }
                writeln!(out, ": {}", problem.detail)?;
                // The advice for damage is the same as recovery's, printed once below.
                if self.recovery.advice.as_ref() != Some(&problem.advice) {
                    writeln!(out, "      what to do: {}", problem.advice)?;
                }
            }
        }
        if self.files.is_empty() {
            writeln!(out, "  (no WAL segments, no snapshot file)")?;
        }
        for note in &self.notes {
            writeln!(out, "  note: {note}")?;
        }
        match (&self.recovery.summary, &self.recovery.error) {
            (Some(summary), _) => {
                let mut lines = summary.lines();
                writeln!(out, "recovery: ok: {}", lines.next().unwrap_or_default())?;
                for line in lines {
                    writeln!(out, "  {line}")?;
                }
            }
            (None, Some(error)) => {
                writeln!(out, "recovery: a member would REFUSE TO START: {error}")?;
                if let Some(advice) = &self.recovery.advice {
                    writeln!(out, "  what to do: {advice}")?;
                }
            }
            (None, None) => {}
        }
        if !self.repairs.is_empty() {
            let applied = self.repairs.iter().all(|r| r.applied);
            if applied {
                writeln!(out, "repairs carried out (each change fsynced, then the {WAL_DIR_NAME}/ directory):")?;
            } else if self.repairs_withheld.is_some() {
                writeln!(out, "repairs that are safe but NOT enough (and so not carried out):")?;
            } else {
                writeln!(out, "`lockstep fsck --repair` would:")?;
            }
            for repair in &self.repairs {
                let verb = if applied { ("truncated", "deleted") } else { ("truncate", "delete") };
                match repair.bytes_after {
                    Some(after) => writeln!(
                        out,
                        "  - {} {} from {} to {} bytes ({} bytes cut): {}",
                        verb.0,
                        repair.path,
                        repair.bytes_before,
                        after,
                        repair.bytes_before.saturating_sub(after),
                        repair.reason
                    )?,
                    None => writeln!(
                        out,
                        "  - {} {} ({} bytes): {}",
                        verb.1, repair.path, repair.bytes_before, repair.reason
                    )?,
                }
            }
        }
        if let Some(why) = &self.repairs_withheld {
            writeln!(out, "  {why}")?;
        }
        if let Some(recheck) = &self.recheck {
            if recheck.clean {
                writeln!(out, "re-checked from disk after the repairs: clean")?;
            } else {
                write!(
                    out,
                    "re-checked from disk after the repairs: {} remain",
                    plural(recheck.problems, "problem", "problems")
                )?;
                match &recheck.recovery_error {
                    Some(e) => writeln!(out, "; a member would refuse to start: {e}")?,
                    None => writeln!(out)?,
                }
            }
        }
        let t = &self.totals;
        let counted = format!(
            "{}, {}, {} bytes",
            plural(t.files, "file", "files"),
            plural(t.records, "record", "records"),
            t.bytes
        );
        match self.status {
            FsckStatus::Clean => writeln!(out, "result: clean ({counted}); a member can start on this directory")?,
            FsckStatus::Repaired => {
                writeln!(out, "result: repaired ({counted} checked); a member can start on this directory")?
            }
            FsckStatus::Problems => {
                let problems = t.torn + t.corrupt;
                if problems == 0 {
                    write!(
                        out,
                        "result: every file reads cleanly, but together they do not make a log a member can \
                         start on ({counted})"
                    )?;
                } else {
                    write!(
                        out,
                        "result: {} found ({} torn, {} corrupt; {counted})",
                        plural(problems, "problem", "problems"),
                        t.torn,
                        t.corrupt
                    )?;
                }
                let repairable = !self.repairs.is_empty() && self.repairs_withheld.is_none();
                if self.mode == "check" && repairable {
                    writeln!(
                        out,
                        ". Run `lockstep fsck --repair {}` to carry out the repairs above",
                        shell_quote(&self.data_dir)
                    )?;
                } else if self.recheck.is_some() {
                    writeln!(out, ". Problems remain after the repairs; see above")?;
                } else {
                    writeln!(out, ". No safe automatic repair exists; see \"what to do\" above")?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/var/lib/lockstep"), "/var/lib/lockstep");
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn an_empty_data_dir_is_clean_with_a_note() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let id = WalIdentity { cluster_id: 1, member_id: 1, group_id: 1 };
        DataDir::create(tmp.path(), id).expect("create");
        let outcome = fsck_data_dir(tmp.path(), FsckOptions::default(), &mut |_| {}).expect("runs");
        assert_eq!((outcome.status, outcome.exit_code), (FsckStatus::Clean, 0));
        assert!(outcome.notes.iter().any(|n| n.contains("starts blank")), "{:?}", outcome.notes);
        assert!(outcome.render_human().contains("result: clean"), "{}", outcome.render_human());
    }
}
