//! The data directory on glommio DMA files: segment files with their unwritten
//! tails, the snapshot file, the directory itself. Every method is one step of
//! carrying out a `WalAction`; ordering and grouping are the driver's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use glommio::io::{Directory, DmaFile, OpenOptions};
use lockstep_core::wal::{SegmentId, SNAPSHOT_FILE_NAME, SNAPSHOT_TEMP_FILE_NAME};

use super::error::WalFailure;

/// The most bytes one DMA write carries; larger flushes are split.
const WRITE_CHUNK_MAX: usize = 1 << 20;

/// Turns a glommio error into the fatal failure of `operation` on `path`.
pub(crate) fn failure(operation: &'static str, path: &Path, error: impl std::fmt::Display) -> WalFailure {
    WalFailure { operation, path: path.to_path_buf(), error: error.to_string() }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).expect("a length that fits in memory")
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).expect("usize fits in u64")
}

/// One open segment and the bytes appended to it that are not yet written.
///
/// `stage` holds the file's bytes from `stage_pos` (a multiple of the DMA
/// alignment) up to the end of the data: the already written part of the last
/// block, which must be written again with the block, and the new bytes. Writes
/// cover whole blocks; the bytes after the data in the last block are zero, which
/// recovery reads as the end of the records.
///
/// The writer pads every sync to a block boundary, so after a `Sync` the stage is
/// empty and the next write starts on a fresh block: `synced_end` (always on a
/// block boundary) only grows, and no write ever starts below it. Only data that
/// no `Sync` covered (appends staged after the last `Sync` of a round) is ever
/// written twice.
struct SegmentFile {
    file: DmaFile,
    path: PathBuf,
    /// `None` until the first append: then the partial last block is read back.
    stage: Option<Vec<u8>>,
    stage_pos: u64,
    /// The end of the data that has reached the file (written, maybe not synced).
    written_end: u64,
    /// The end of the data that a `Sync` action covered and an fsync made durable.
    /// No write starts below it.
    synced_end: u64,
    /// The end of the data when the last `Sync` action of the round being carried
    /// out was reached; it becomes `synced_end` once the segment is fsynced.
    sync_point: Option<u64>,
}

impl SegmentFile {
    fn end(&self) -> u64 {
        self.stage_pos + to_u64(self.stage.as_ref().map_or(0, Vec::len))
    }

    fn dirty(&self) -> bool {
        self.stage.is_some() && self.end() > self.written_end
    }

    fn open(file: DmaFile, path: PathBuf, stage: Option<Vec<u8>>) -> SegmentFile {
        SegmentFile { file, path, stage, stage_pos: 0, written_end: 0, synced_end: 0, sync_point: None }
    }
}

/// What one flush wrote.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Written {
    pub(crate) bytes: u64,
    pub(crate) writes: u64,
}

/// The member's data directory.
pub(crate) struct Disk {
    dir: PathBuf,
    directory: Directory,
    segments: BTreeMap<SegmentId, SegmentFile>,
    /// Preallocate a truncated segment back to this length (0: do not).
    preallocate_len: u64,
    /// The block sizes the writer pads syncs to (the configured one, and the
    /// last recovered segment's): each must be a multiple of the DMA alignment.
    block_sizes: Vec<u32>,
}

impl Disk {
    pub(crate) async fn open(dir: &Path, preallocate_len: u64, block_sizes: Vec<u32>) -> Result<Disk, WalFailure> {
        let directory = Directory::open(dir).await.map_err(|e| failure("open directory", dir, e))?;
        Ok(Disk { dir: dir.to_path_buf(), directory, segments: BTreeMap::new(), preallocate_len, block_sizes })
    }

    /// Refuses a block size that is not a multiple of the file's DMA alignment:
    /// a sync padded to it could end inside a DMA block, which the next write
    /// would write again.
    fn check_alignment(&self, file: &DmaFile, path: &Path) -> Result<(), WalFailure> {
        let alignment = file.alignment();
        match self.block_sizes.iter().find(|b| !u64::from(**b).is_multiple_of(alignment)) {
            None => Ok(()),
            Some(block_size) => Err(failure(
                "open segment",
                path,
                format!(
                    "the WAL block size ({block_size} bytes) is not a multiple of the device's O_DIRECT alignment \
                     ({alignment} bytes); configure a block size that is (at least the device's physical block)"
                ),
            )),
        }
    }

    fn segment_path(&self, segment: &SegmentId) -> PathBuf {
        self.dir.join(segment.file_name())
    }

    /// The open segment, opening an existing file on first use.
    async fn segment(&mut self, segment: SegmentId) -> Result<&mut SegmentFile, WalFailure> {
        if !self.segments.contains_key(&segment) {
            let path = self.segment_path(&segment);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .dma_open(&path)
                .await
                .map_err(|e| failure("open segment", &path, e))?;
            self.check_alignment(&file, &path)?;
            self.segments.insert(segment, SegmentFile::open(file, path, None));
        }
        Ok(self.segments.get_mut(&segment).expect("just inserted"))
    }

    /// `CreateSegment`: a new file, preallocated, with `bytes` staged at offset 0.
    pub(crate) async fn create_segment(
        &mut self,
        segment: SegmentId,
        bytes: &[u8],
        preallocate_len: u64,
    ) -> Result<(), WalFailure> {
        let path = self.segment_path(&segment);
        assert!(!self.segments.contains_key(&segment), "{segment} is created twice");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .dma_open(&path)
            .await
            .map_err(|e| failure("create segment", &path, e))?;
        self.check_alignment(&file, &path)?;
        if preallocate_len > to_u64(bytes.len()) {
            file.pre_allocate(preallocate_len, false).await.map_err(|e| failure("preallocate", &path, e))?;
        }
        self.segments.insert(segment, SegmentFile::open(file, path, Some(bytes.to_vec())));
        Ok(())
    }

    /// `Append`: stages `bytes` at `offset`, the segment's end of data.
    pub(crate) async fn append(&mut self, segment: SegmentId, offset: u64, bytes: &[u8]) -> Result<(), WalFailure> {
        let file = self.segment(segment).await?;
        if file.stage.is_none() {
            // First append to a segment that existed before: read back the written
            // part of the block the data ends in, since writes cover whole blocks.
            // Only after recovery can the data end inside a block (the node stopped
            // before a sync, or while writing); nothing in that block was ever
            // covered by a sync, which always ends on a block boundary.
            let alignment = file.file.alignment();
            let block = offset / alignment * alignment;
            let keep = to_usize(offset - block);
            let mut stage = Vec::with_capacity(keep + bytes.len());
            if keep > 0 {
                stage.resize(keep, 0);
                read_exact_at(&file.path, block, &mut stage)?;
            }
            file.stage = Some(stage);
            file.stage_pos = block;
            file.written_end = offset;
            file.synced_end = file.synced_end.max(block);
        }
        assert_eq!(file.end(), offset, "{}: append at {offset} is not at the end of the data", file.path.display());
        file.stage.as_mut().expect("staged").extend_from_slice(bytes);
        Ok(())
    }

    /// A `Sync` action lists `segment`: the data staged so far is what it covers,
    /// durable once the segment is fsynced. The writer padded it to a block
    /// boundary, so nothing will be written into its last block again.
    pub(crate) fn sync_point(&mut self, segment: SegmentId) {
        let Some(file) = self.segments.get_mut(&segment) else { return };
        if file.stage.is_none() {
            // Opened for the sync only: nothing was written through this handle.
            return;
        }
        let end = file.end();
        let alignment = file.file.alignment();
        assert!(
            end.is_multiple_of(alignment),
            "{}: a sync at {end} ends inside a {alignment}-byte block; the next write would rewrite synced data \
             (the WAL writer pads every sync to a block boundary)",
            file.path.display()
        );
        file.sync_point = Some(end);
    }

    /// The segments with staged bytes not yet written.
    pub(crate) fn dirty_segments(&self) -> Vec<SegmentId> {
        self.segments.iter().filter(|(_, f)| f.dirty()).map(|(id, _)| *id).collect()
    }

    /// Writes every staged byte of `segment` (whole blocks, zero-padded), keeping
    /// the partial last block staged for the next write.
    pub(crate) async fn write_out(&mut self, segment: SegmentId) -> Result<Written, WalFailure> {
        let Some(file) = self.segments.get_mut(&segment) else { return Ok(Written::default()) };
        if !file.dirty() {
            return Ok(Written::default());
        }
        let alignment = to_usize(file.file.alignment());
        let stage = file.stage.take().expect("dirty means staged");
        // Whole blocks before `written_end` are on the file already.
        let skip = to_usize(file.written_end - file.stage_pos) / alignment * alignment;
        let first = file.stage_pos + to_u64(skip);
        assert!(
            first >= file.synced_end,
            "{}: a write at {first} would rewrite a block of data synced up to {}",
            file.path.display(),
            file.synced_end
        );
        let mut written = Written::default();
        let mut at = skip;
        while at < stage.len() {
            let chunk = (stage.len() - at).min(WRITE_CHUNK_MAX);
            let padded = chunk.div_ceil(alignment) * alignment;
            let mut buffer = file.file.alloc_dma_buffer(padded);
            let target = buffer.as_bytes_mut();
            target[..chunk].copy_from_slice(&stage[at..at + chunk]);
            target[chunk..].fill(0);
            let pos = file.stage_pos + to_u64(at);
            let n = file.file.write_at(buffer, pos).await.map_err(|e| failure("write", &file.path, e))?;
            if n != padded {
                return Err(failure("write", &file.path, format!("short write: {n} of {padded} bytes at {pos}")));
            }
            written.bytes += to_u64(padded);
            written.writes += 1;
            at += chunk;
        }
        let end = file.stage_pos + to_u64(stage.len());
        // Keep the partial last block: the next write rewrites it with more data.
        let keep_from = stage.len() / alignment * alignment;
        file.stage = Some(stage[keep_from..].to_vec());
        file.stage_pos += to_u64(keep_from);
        file.written_end = end;
        Ok(written)
    }

    /// `fdatasync` of one segment; what a `Sync` action covered is now durable.
    pub(crate) async fn sync_segment(&mut self, segment: SegmentId) -> Result<(), WalFailure> {
        let file = self.segment(segment).await?;
        file.file.fdatasync().await.map_err(|e| failure("fdatasync", &file.path, e))?;
        if let Some(point) = file.sync_point.take() {
            assert!(point <= file.written_end, "{}: synced data was not written", file.path.display());
            file.synced_end = file.synced_end.max(point);
        }
        Ok(())
    }

    /// `fsync` of the directory, for created, deleted and renamed files.
    pub(crate) async fn sync_directory(&self) -> Result<(), WalFailure> {
        self.directory.sync().await.map_err(|e| failure("fsync directory", &self.dir, e))
    }

    /// `WriteSnapshot`: temporary file, fdatasync, rename, directory sync.
    pub(crate) async fn write_snapshot(&mut self, bytes: &[u8]) -> Result<Written, WalFailure> {
        let temp = self.dir.join(SNAPSHOT_TEMP_FILE_NAME);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .dma_open(&temp)
            .await
            .map_err(|e| failure("create snapshot", &temp, e))?;
        let alignment = to_usize(file.alignment());
        let mut written = Written::default();
        let mut at = 0;
        while at < bytes.len() {
            let chunk = (bytes.len() - at).min(WRITE_CHUNK_MAX);
            let padded = chunk.div_ceil(alignment) * alignment;
            let mut buffer = file.alloc_dma_buffer(padded);
            let target = buffer.as_bytes_mut();
            target[..chunk].copy_from_slice(&bytes[at..at + chunk]);
            target[chunk..].fill(0);
            let n = file.write_at(buffer, to_u64(at)).await.map_err(|e| failure("write snapshot", &temp, e))?;
            if n != padded {
                return Err(failure("write snapshot", &temp, format!("short write: {n} of {padded} bytes")));
            }
            written.bytes += to_u64(padded);
            written.writes += 1;
            at += chunk;
        }
        // DMA writes are whole blocks: cut the padding, the file must be exact.
        file.truncate(to_u64(bytes.len())).await.map_err(|e| failure("truncate snapshot", &temp, e))?;
        file.fdatasync().await.map_err(|e| failure("fdatasync", &temp, e))?;
        file.close().await.map_err(|e| failure("close snapshot", &temp, e))?;
        let target = self.dir.join(SNAPSHOT_FILE_NAME);
        glommio::io::rename(&temp, &target).await.map_err(|e| failure("rename snapshot", &target, e))?;
        self.sync_directory().await?;
        Ok(written)
    }

    /// `DeleteSegments`, oldest first. The directory is synced by the next sync.
    pub(crate) async fn delete_segments(&mut self, segments: &[SegmentId]) -> Result<(), WalFailure> {
        for segment in segments {
            if let Some(file) = self.segments.remove(segment) {
                assert!(!file.dirty(), "{segment} is deleted with unwritten bytes");
                file.file.close().await.map_err(|e| failure("close segment", &file.path, e))?;
            }
            let path = self.segment_path(segment);
            glommio::io::remove(&path).await.map_err(|e| failure("delete segment", &path, e))?;
        }
        Ok(())
    }

    /// `TruncateSegment`: cut, re-preallocate, fdatasync.
    pub(crate) async fn truncate_segment(&mut self, segment: SegmentId, len: u64) -> Result<(), WalFailure> {
        let preallocate_len = self.preallocate_len;
        let file = self.segment(segment).await?;
        assert!(!file.dirty(), "{segment} is cut with unwritten bytes");
        assert!(len >= file.synced_end, "{segment} is cut to {len} bytes, below its synced data");
        file.stage = None;
        file.file.truncate(len).await.map_err(|e| failure("truncate segment", &file.path, e))?;
        if preallocate_len > len {
            file.file.pre_allocate(preallocate_len, false).await.map_err(|e| failure("preallocate", &file.path, e))?;
        }
        file.file.fdatasync().await.map_err(|e| failure("fdatasync", &file.path, e))
    }

    /// Closes every file.
    pub(crate) async fn close(mut self) -> Result<(), WalFailure> {
        for (_, file) in std::mem::take(&mut self.segments) {
            file.file.close().await.map_err(|e| failure("close segment", &file.path, e))?;
        }
        self.directory.close().await.map_err(|e| failure("close directory", &self.dir, e))
    }
}

/// Reads `buffer.len()` bytes at `pos` with a buffered `pread`.
///
/// glommio 0.9's DMA reads (`IORING_OP_READ_FIXED` on the registered buffers)
/// fail with `EOPNOTSUPP` on the kernels this was tested on (6.18), while its DMA
/// writes work, so the WAL reads with plain system calls. It reads only at
/// startup and once per reopened segment (its last block), so blocking the
/// executor for it is harmless.
fn read_exact_at(path: &Path, pos: u64, buffer: &mut [u8]) -> Result<(), WalFailure> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path).map_err(|e| failure("open", path, e))?;
    file.read_exact_at(buffer, pos).map_err(|e| failure("read", path, e))
}

/// Reads a whole file (see [`read_exact_at`] for why not with DMA).
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, WalFailure> {
    std::fs::read(path).map_err(|e| failure("read", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::{LocalExecutorBuilder, Placement};

    const SEGMENT: SegmentId = SegmentId { seq: 1, first_index: 1 };
    const BLOCK: usize = 4096;

    fn run<T>(future: impl std::future::Future<Output = T>) -> T {
        LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(1 << 20)
            .make()
            .expect("a glommio executor starts")
            .run(future)
    }

    #[test]
    fn after_a_sync_the_next_round_starts_on_a_fresh_block() {
        let temp = tempfile::tempdir().expect("temp dir");
        run(async {
            let mut disk = Disk::open(temp.path(), 0, vec![4096]).await.expect("opens");
            disk.create_segment(SEGMENT, &[1; 100], 0).await.expect("creates");
            disk.append(SEGMENT, 100, &[2; BLOCK - 100]).await.expect("stages");
            disk.sync_point(SEGMENT);
            // Staged after the sync: written with the round, not covered by it.
            disk.append(SEGMENT, to_u64(BLOCK), &[3; 10]).await.expect("stages");
            let written = disk.write_out(SEGMENT).await.expect("writes");
            disk.sync_segment(SEGMENT).await.expect("syncs");
            let alignment = to_usize(disk.segments[&SEGMENT].file.alignment());
            assert_eq!(written.bytes, to_u64(BLOCK + alignment));
            assert_eq!(disk.segments[&SEGMENT].synced_end, to_u64(BLOCK));
            // The next round writes the block of the uncovered append again, never a synced one.
            disk.append(SEGMENT, to_u64(BLOCK + 10), &[4; 10]).await.expect("stages");
            let written = disk.write_out(SEGMENT).await.expect("writes");
            assert_eq!(written.bytes, to_u64(alignment));
            disk.close().await.expect("closes");
        });
        let bytes = std::fs::read(temp.path().join(SEGMENT.file_name())).expect("reads");
        let mut expected = vec![1; 100];
        expected.extend_from_slice(&[2; BLOCK - 100]);
        expected.extend_from_slice(&[3; 10]);
        expected.extend_from_slice(&[4; 10]);
        assert_eq!(bytes[..expected.len()], expected[..]);
        assert!(bytes[expected.len()..].iter().all(|b| *b == 0));
    }

    #[test]
    #[should_panic(expected = "ends inside a")]
    fn a_sync_that_ends_inside_a_block_is_a_bug() {
        let temp = tempfile::tempdir().expect("temp dir");
        run(async {
            let mut disk = Disk::open(temp.path(), 0, vec![4096]).await.expect("opens");
            disk.create_segment(SEGMENT, &[1; 100], 0).await.expect("creates");
            // Without the writer's padding the next round would rewrite this block.
            disk.sync_point(SEGMENT);
        });
    }
}
