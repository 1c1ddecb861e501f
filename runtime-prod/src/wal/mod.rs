//! The WAL executor: core's pure [`WalWriter`] decides, this module carries the
//! decisions out on glommio DMA files, with group commit.
//!
//! # How actions are carried out
//!
//! [`Wal::submit`] runs the writer at once and queues its actions, except for
//! `Command::Sync`: the driver hands the writer one `Sync`, with the highest id
//! submitted, when it starts its next round (so every sync submitted while an
//! fsync runs becomes one writer `Sync` and one padding record; a sync handed
//! over after later writes covers them too, which only makes it report later).
//! A driver task takes everything queued and carries it out in order. A maximal run of
//! `Append` and `Sync` actions is grouped: the appends are staged in memory, then
//! every staged byte is written with whole-block DMA writes and **one**
//! `fdatasync` per touched segment (plus the directory, if any sync asked for it)
//! covers every `Sync` of the run; the highest sync id becomes
//! [`Wal::persisted`]. While that fsync runs, new submissions queue up, and the
//! next round covers all of them with one fsync again: that is group commit.
//! Any other action (`CreateSegment`, `WriteSnapshot`, `DeleteSegments`,
//! `TruncateSegment`) ends a run and is carried out only after everything before
//! it finished; the writer has already put the syncs that its safety depends on
//! in front of it. Appends after the last sync of the queue stay staged until a
//! sync needs them (nothing depends on their durability).
//!
//! Writing an append early (before a sync that precedes it in the queue has
//! finished) is safe: a sync promises that earlier writes are durable, never
//! that later ones are not. Reporting a sync id late is safe: the node waits.
//!
//! # Writes cover whole blocks; synced blocks are never written again
//!
//! `O_DIRECT` writes are aligned to the device's block (`DmaFile::alignment`);
//! the bytes after the data in the last block are zeroes, which recovery reads
//! as the end of the records. Core's writer ends every `Sync` on a multiple of
//! [`WalConfig::block_size`] (a padding record fills the rest of the block), and
//! a block size that is not a multiple of the alignment is refused when a
//! segment file is opened or created (a [`WalFailure`]).
//! So each group commit starts on a fresh block, and **a block that an fsync
//! made durable is never written again**: a write torn by a power cut, whatever
//! it leaves in the blocks it was writing, cannot damage an acknowledged record.
//! The executor asserts this: a `Sync` must leave every segment it covers on a
//! block boundary, and no write may start below the end of the synced data. Only
//! blocks that no `Sync` covered are written twice: appends queued after the
//! last `Sync` of a round are written with it and written again (with more
//! records) by the next round, and after recovery the block that the recovered
//! data ends in (written but never covered by a sync) gets the writer's padding.

mod disk;
mod error;

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::task::{Poll, Waker};

use futures_lite::future;
use glommio::task::JoinHandle;
use lockstep_core::wal::{
    recover_with_cipher, Cipher, RecoveryReport, SegmentId, WalAction, WalConfig, WalIdentity, WalWriter,
    SNAPSHOT_FILE_NAME, SNAPSHOT_TEMP_FILE_NAME,
};
use lockstep_core::Command;

use disk::{failure, read_file, Disk};
pub use error::{WalFailure, WalOpenError};

/// Counters of what the WAL did since it was opened.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalStats {
    /// `Command::Sync`s reported persisted.
    pub syncs_completed: u64,
    /// `fdatasync` calls on segments (one per segment per group commit).
    pub segment_fsyncs: u64,
    /// Group commits: rounds of writes that ended in fsyncs.
    pub group_commits: u64,
    /// Bytes written with DMA writes (whole blocks; a block holding appends that
    /// no `Sync` covered yet counts again when the next round rewrites it).
    pub bytes_written: u64,
    /// DMA write calls.
    pub writes: u64,
}

/// State shared between the handle and the driver task.
struct Shared {
    writer: WalWriter,
    queue: Vec<WalAction>,
    /// The highest sync id submitted.
    submitted: u64,
    /// The highest sync id submitted but not yet handed to the writer, and how
    /// many `Command::Sync`s it stands for.
    sync_pending: Option<(u64, u64)>,
    /// Sync ids handed to the writer and not yet durable, with how many
    /// `Command::Sync`s each stands for, in order.
    syncs_handed: VecDeque<(u64, u64)>,
    /// The highest sync id known durable.
    persisted: u64,
    failure: Option<WalFailure>,
    closing: bool,
    driver: Option<Waker>,
    waiters: Vec<Waker>,
    stats: WalStats,
}

impl Shared {
    fn wake_waiters(&mut self) {
        for waker in self.waiters.drain(..) {
            waker.wake();
        }
    }
}

/// A member's write-ahead log on glommio DMA files.
///
/// - [`Wal::open`] recovers the data directory (creating it if needed) and
///   returns the [`RecoveryReport`], whose `recovered` goes to `Node::restart`.
/// - Input: [`Wal::submit`] every command the node emits, in order (commands
///   that are not storage writes are ignored).
/// - Output: [`Wal::wait_persisted`] resolves once the `Sync` with that id (and
///   every write before it) is durable; report `Event::Persisted` with the value
///   it returns, the highest durable sync id.
/// - A [`WalFailure`] from any of them is fatal: stop the member.
/// - [`Wal::close`] finishes the queued work and closes the files.
///
/// The handle is cheap to clone; all clones drive the same log. It must be
/// opened and used inside one glommio executor.
#[derive(Clone)]
pub struct Wal {
    shared: Rc<RefCell<Shared>>,
    driver: Rc<RefCell<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shared = self.shared.borrow();
        f.debug_struct("Wal")
            .field("submitted", &shared.submitted)
            .field("persisted", &shared.persisted)
            .field("failure", &shared.failure)
            .field("stats", &shared.stats)
            .finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens the WAL in `dir`: reads every segment and the snapshot file,
    /// recovers them with [`lockstep_core::wal::recover()`], logs the report (and a torn tail it
    /// dropped), cuts what recovery dropped, and starts the driver task.
    ///
    /// Refuses to start ([`WalOpenError::Recovery`], naming the file and offset)
    /// on damage a crash cannot explain. A `config.block_size` (or last segment's
    /// block size) that is not a multiple of the device's `O_DIRECT` alignment
    /// fails here ([`WalOpenError::Io`]) when there is a segment to resume, and
    /// otherwise at the first segment's creation (a [`WalFailure`]). Must be
    /// called inside a glommio executor.
    pub async fn open(
        dir: impl AsRef<Path>,
        identity: WalIdentity,
        config: WalConfig,
    ) -> Result<(Wal, RecoveryReport), WalOpenError> {
        Wal::open_with_cipher(dir, identity, config, None).await
    }

    /// [`Wal::open`] with encryption at rest: records and the snapshot file
    /// are sealed with `cipher` when written and opened with it when read
    /// (see `lockstep_core::wal::cipher`); plain records written before
    /// encryption was turned on are still read.
    pub async fn open_with_cipher(
        dir: impl AsRef<Path>,
        identity: WalIdentity,
        config: WalConfig,
        cipher: Option<Cipher>,
    ) -> Result<(Wal, RecoveryReport), WalOpenError> {
        // glommio opens a relative directory against no directory at all
        // (EBADF, "Bad file descriptor"): `lockstep dev --data-dir dev` and a
        // relative `data_dir` failed so. Made absolute here, where glommio is.
        let dir = std::path::absolute(dir.as_ref()).map_err(|e| failure("resolve directory", dir.as_ref(), e))?;
        std::fs::create_dir_all(&dir).map_err(|e| failure("create directory", &dir, e))?;
        let (segments, snapshot) = read_directory(&dir)?;
        let report = recover_with_cipher(&identity, &segments, snapshot.as_deref(), cipher.as_ref())
            .map_err(|error| WalOpenError::Recovery { dir: dir.clone(), error })?;
        tracing::info!(dir = %dir.display(), "WAL recovered: {}", first_line(&report));
        if let Some(torn) = &report.torn_segment {
            tracing::warn!(dir = %dir.display(), "WAL recovery: {torn}");
        }
        if let Some(torn) = &report.torn_tail {
            tracing::warn!(dir = %dir.display(), "WAL recovery: {torn}");
        }
        let preallocate_len = if config.preallocate { config.segment_size_max } else { 0 };
        let mut block_sizes = vec![config.block_size];
        block_sizes.extend(report.segments.last().map(|s| s.block_size));
        let mut disk = Disk::open(&dir, preallocate_len, block_sizes).await?;
        let (writer, actions) = WalWriter::resume_with_cipher(identity, config, &report, cipher);
        let mut stats = WalStats::default();
        execute(&mut disk, &actions, &mut stats, &mut |_| {}).await?;
        let shared = Rc::new(RefCell::new(Shared {
            writer,
            queue: Vec::new(),
            submitted: 0,
            sync_pending: None,
            syncs_handed: VecDeque::new(),
            persisted: 0,
            failure: None,
            closing: false,
            driver: None,
            waiters: Vec::new(),
            stats,
        }));
        let task = glommio::spawn_local(drive(disk, dir, shared.clone())).detach();
        Ok((Wal { shared, driver: Rc::new(RefCell::new(Some(task))) }, report))
    }

    /// Hands one command to the writer and queues the file actions it decides;
    /// a `Command::Sync` is handed over by the driver when it starts its next
    /// round (see the module doc). `Command::Sync { id }` ids must increase.
    /// Returns the WAL's failure if it has stopped.
    pub fn submit(&self, command: &Command) -> Result<(), WalFailure> {
        let mut shared = self.shared.borrow_mut();
        if let Some(failure) = &shared.failure {
            return Err(failure.clone());
        }
        assert!(!shared.closing, "a command submitted to a closed WAL");
        let actions = match command {
            Command::Sync { id } => {
                assert!(*id > shared.submitted, "sync id {id} after sync id {}", shared.submitted);
                shared.submitted = *id;
                let covered = shared.sync_pending.map_or(0, |(_, n)| n);
                shared.sync_pending = Some((*id, covered + 1));
                Vec::new()
            }
            _ => shared.writer.handle(command),
        };
        shared.queue.extend(actions);
        if !shared.queue.is_empty() || shared.sync_pending.is_some() {
            if let Some(waker) = shared.driver.take() {
                waker.wake();
            }
        }
        Ok(())
    }

    /// The highest sync id known durable (0 before any).
    pub fn persisted(&self) -> u64 {
        self.shared.borrow().persisted
    }

    /// What the WAL did so far.
    pub fn stats(&self) -> WalStats {
        self.shared.borrow().stats
    }

    /// Waits until the sync `id` is durable and returns the highest durable
    /// sync id (at least `id`), or the failure that stopped the WAL.
    pub async fn wait_persisted(&self, id: u64) -> Result<u64, WalFailure> {
        future::poll_fn(|cx| {
            let mut shared = self.shared.borrow_mut();
            if shared.persisted >= id {
                return Poll::Ready(Ok(shared.persisted));
            }
            if let Some(failure) = &shared.failure {
                return Poll::Ready(Err(failure.clone()));
            }
            assert!(id <= shared.submitted, "waiting for sync {id}, which was never submitted");
            shared.waiters.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Carries out everything queued (including a final sync of staged bytes),
    /// stops the driver and closes the files.
    pub async fn close(self) -> Result<(), WalFailure> {
        {
            let mut shared = self.shared.borrow_mut();
            shared.closing = true;
            if let Some(waker) = shared.driver.take() {
                waker.wake();
            }
        }
        let task = self.driver.borrow_mut().take();
        if let Some(task) = task {
            task.await;
        }
        let shared = self.shared.borrow();
        shared.failure.clone().map_or(Ok(()), Err)
    }
}

/// The report's first line (the rest are the torn-tail lines, logged apart).
fn first_line(report: &RecoveryReport) -> String {
    report.to_string().lines().next().unwrap_or_default().to_string()
}

type Files = Vec<(String, Vec<u8>)>;

/// Reads every segment file and the snapshot file; removes a leftover temporary
/// snapshot (it was never renamed into place, so it is not part of the state).
fn read_directory(dir: &Path) -> Result<(Files, Option<Vec<u8>>), WalFailure> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| failure("list directory", dir, e))? {
        let entry = entry.map_err(|e| failure("list directory", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    let mut segments = Vec::new();
    let mut snapshot = None;
    for name in names {
        let path = dir.join(&name);
        if name == SNAPSHOT_FILE_NAME {
            snapshot = Some(read_file(&path)?);
        } else if name == SNAPSHOT_TEMP_FILE_NAME {
            tracing::info!(file = %path.display(), "removing an unfinished snapshot file");
            std::fs::remove_file(&path).map_err(|e| failure("remove", &path, e))?;
        } else if name.ends_with(".wal") {
            // A bad segment name is refused by recovery, with the name.
            let bytes = read_file(&path)?;
            segments.push((name, bytes));
        } else {
            tracing::warn!(file = %path.display(), "ignoring a file that is not part of the WAL");
        }
    }
    Ok((segments, snapshot))
}

/// The driver task: carries out queued actions until closed or failed.
async fn drive(mut disk: Disk, dir: PathBuf, shared: Rc<RefCell<Shared>>) {
    loop {
        let batch = future::poll_fn(|cx| {
            let mut state = shared.borrow_mut();
            let state = &mut *state;
            if let Some((id, covered)) = state.sync_pending.take() {
                // One writer `Sync` (and one padding record) for every sync
                // submitted since the last round.
                state.queue.extend(state.writer.handle(&Command::Sync { id }));
                state.syncs_handed.push_back((id, covered));
            }
            if !state.queue.is_empty() {
                return Poll::Ready(Some(std::mem::take(&mut state.queue)));
            }
            if state.closing {
                return Poll::Ready(None);
            }
            state.driver = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        let closing = batch.is_none();
        let batch = batch.unwrap_or_default();
        let mut stats = WalStats::default();
        let mut report = |id: u64| {
            let mut state = shared.borrow_mut();
            state.persisted = state.persisted.max(id);
            while let Some((_, covered)) = state.syncs_handed.front().copied().filter(|(handed, _)| *handed <= id) {
                state.stats.syncs_completed += covered;
                state.syncs_handed.pop_front();
            }
            state.wake_waiters();
        };
        let mut result = execute(&mut disk, &batch, &mut stats, &mut report).await;
        if result.is_ok() && closing {
            result = flush_and_sync(&mut disk, &BTreeSet::new(), false, &mut stats).await;
        }
        {
            let mut state = shared.borrow_mut();
            let total = &mut state.stats;
            total.syncs_completed += stats.syncs_completed;
            total.segment_fsyncs += stats.segment_fsyncs;
            total.group_commits += stats.group_commits;
            total.bytes_written += stats.bytes_written;
            total.writes += stats.writes;
            if let Err(failure) = result {
                tracing::error!(dir = %dir.display(), "{failure}");
                state.failure = Some(failure);
                state.wake_waiters();
                return;
            }
        }
        if closing {
            if let Err(failure) = disk.close().await {
                tracing::error!(dir = %dir.display(), "{failure}");
                let mut state = shared.borrow_mut();
                state.failure = Some(failure);
                state.wake_waiters();
            }
            return;
        }
    }
}

/// Carries out `actions` in order, grouping each run of appends and syncs into
/// one round of writes and fsyncs; `report` gets the highest sync id of each
/// round once it is durable.
async fn execute(
    disk: &mut Disk,
    actions: &[WalAction],
    stats: &mut WalStats,
    report: &mut dyn FnMut(u64),
) -> Result<(), WalFailure> {
    let mut at = 0;
    while at < actions.len() {
        match &actions[at] {
            WalAction::Append { .. } | WalAction::Sync { .. } => {
                let mut segments = BTreeSet::new();
                let mut directory = false;
                let mut synced = false;
                let mut id_max = None;
                while let Some(action) = actions.get(at) {
                    match action {
                        WalAction::Append { segment, offset, bytes } => disk.append(*segment, *offset, bytes).await?,
                        WalAction::Sync { id, segments: listed, directory: dir } => {
                            synced = true;
                            for segment in listed {
                                disk.sync_point(*segment);
                            }
                            segments.extend(listed.iter().copied());
                            directory |= dir;
                            if let Some(id) = id {
                                id_max = Some(id_max.map_or(*id, |m: u64| m.max(*id)));
                            }
                        }
                        _ => break,
                    }
                    at += 1;
                }
                if synced {
                    flush_and_sync(disk, &segments, directory, stats).await?;
                    if let Some(id) = id_max {
                        report(id);
                    }
                } else if at < actions.len() {
                    // The next action comes after these appends: write them first.
                    for segment in disk.dirty_segments() {
                        let written = disk.write_out(segment).await?;
                        stats.bytes_written += written.bytes;
                        stats.writes += written.writes;
                    }
                }
            }
            WalAction::CreateSegment { segment, bytes, preallocate_len } => {
                disk.create_segment(*segment, bytes, *preallocate_len).await?;
                at += 1;
            }
            WalAction::WriteSnapshot { bytes } => {
                let written = disk.write_snapshot(bytes).await?;
                stats.bytes_written += written.bytes;
                stats.writes += written.writes;
                at += 1;
            }
            WalAction::DeleteSegments { segments } => {
                disk.delete_segments(segments).await?;
                at += 1;
            }
            WalAction::TruncateSegment { segment, len } => {
                disk.truncate_segment(*segment, *len).await?;
                at += 1;
            }
        }
    }
    Ok(())
}

/// Writes every staged byte, then fsyncs the written and the listed segments and,
/// if asked, the directory.
async fn flush_and_sync(
    disk: &mut Disk,
    listed: &BTreeSet<SegmentId>,
    directory: bool,
    stats: &mut WalStats,
) -> Result<(), WalFailure> {
    let mut segments = listed.clone();
    for segment in disk.dirty_segments() {
        let written = disk.write_out(segment).await?;
        stats.bytes_written += written.bytes;
        stats.writes += written.writes;
        segments.insert(segment);
    }
    if segments.is_empty() && !directory {
        return Ok(());
    }
    for segment in &segments {
        disk.sync_segment(*segment).await?;
        stats.segment_fsyncs += 1;
    }
    if directory {
        disk.sync_directory().await?;
    }
    stats.group_commits += 1;
    Ok(())
}
