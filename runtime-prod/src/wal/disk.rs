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
struct SegmentFile {
    file: DmaFile,
    path: PathBuf,
    /// `None` until the first append: then the partial last block is read back.
    stage: Option<Vec<u8>>,
    stage_pos: u64,
    /// The end of the data that has reached the file (written, maybe not synced).
    written_end: u64,
}

impl SegmentFile {
    fn end(&self) -> u64 {
        self.stage_pos + to_u64(self.stage.as_ref().map_or(0, Vec::len))
    }

    fn dirty(&self) -> bool {
        self.stage.is_some() && self.end() > self.written_end
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
}

impl Disk {
    pub(crate) async fn open(dir: &Path, preallocate_len: u64) -> Result<Disk, WalFailure> {
        let directory = Directory::open(dir).await.map_err(|e| failure("open directory", dir, e))?;
        Ok(Disk { dir: dir.to_path_buf(), directory, segments: BTreeMap::new(), preallocate_len })
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
            self.segments.insert(segment, SegmentFile { file, path, stage: None, stage_pos: 0, written_end: 0 });
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
        if preallocate_len > to_u64(bytes.len()) {
            file.pre_allocate(preallocate_len, false).await.map_err(|e| failure("preallocate", &path, e))?;
        }
        self.segments
            .insert(segment, SegmentFile { file, path, stage: Some(bytes.to_vec()), stage_pos: 0, written_end: 0 });
        Ok(())
    }

    /// `Append`: stages `bytes` at `offset`, the segment's end of data.
    pub(crate) async fn append(&mut self, segment: SegmentId, offset: u64, bytes: &[u8]) -> Result<(), WalFailure> {
        let file = self.segment(segment).await?;
        if file.stage.is_none() {
            // First append to a segment that existed before: read back the written
            // part of the block the data ends in, since writes cover whole blocks.
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
        }
        assert_eq!(file.end(), offset, "{}: append at {offset} is not at the end of the data", file.path.display());
        file.stage.as_mut().expect("staged").extend_from_slice(bytes);
        Ok(())
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

    /// `fdatasync` of one segment.
    pub(crate) async fn sync_segment(&mut self, segment: SegmentId) -> Result<(), WalFailure> {
        let file = self.segment(segment).await?;
        file.file.fdatasync().await.map_err(|e| failure("fdatasync", &file.path, e))
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
