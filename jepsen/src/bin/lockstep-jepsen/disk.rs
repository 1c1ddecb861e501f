//! The disk nemesis: each member's data directory is a small tmpfs of its
//! own (`DISK_BYTES`; tmpfs takes the WAL's O_DIRECT writes on current
//! kernels), mounted with the source name `lsjdisk-<run>-<member>` so that a
//! later run can find and unmount it should this one die. A fault fills the
//! file system with a filler file; the heal deletes it.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The size of each member's data file system.
pub const DISK_BYTES: u64 = 256 << 20;
/// The filler file's name in a data directory.
const FILLER: &str = "lsj-disk-filler";

/// The mount source name of member `id`'s data file system in run `run_id`.
pub fn source_name(run_id: &str, id: u64) -> String {
    format!("lsjdisk-{run_id}-{id}")
}

/// The run id in a mount source name of ours.
pub fn parse_source_name(name: &str) -> Option<String> {
    let (run_id, member) = name.strip_prefix("lsjdisk-")?.split_once('-')?;
    let hex = !run_id.is_empty() && run_id.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    (hex && member.parse::<u64>().is_ok()).then(|| run_id.to_owned())
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program).args(args).output().map_err(|error| format!("{program}: {error}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("{program} {}: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// Mounts a fresh tmpfs of `DISK_BYTES` at `dir` (created if needed).
pub fn mount(dir: &Path, source: &str) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    let options = format!("size={DISK_BYTES},mode=0700");
    run("mount", &["-t", "tmpfs", "-o", &options, source, &dir.to_string_lossy()])
}

/// Unmounts `dir` (lazily, should something still hold it open).
pub fn unmount(dir: &Path) {
    let _ = run("umount", &["-l", &dir.to_string_lossy()]);
}

/// Fills the file system of `dir` with a filler file until it is full;
/// returns the bytes written.
pub fn fill(dir: &Path) -> Result<u64, String> {
    let path = dir.join(FILLER);
    let mut file = File::create(&path).map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    let chunk = vec![0_u8; 1 << 20];
    let mut written = 0_u64;
    // Bounded: the file system is at most DISK_BYTES.
    while written <= DISK_BYTES {
        match file.write(&chunk) {
            Ok(0) | Err(_) => break,
            Ok(bytes) => written += bytes as u64,
        }
    }
    // Top off the last partial megabyte.
    let small = [0_u8; 4096];
    while let Ok(bytes) = file.write(&small) {
        if bytes == 0 {
            break;
        }
        written += bytes as u64;
    }
    Ok(written)
}

/// Whether a tmpfs can be mounted here and takes O_DIRECT writes (Linux 6.6
/// and later), as the members' WAL needs: an error says why not.
pub fn check_supported() -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("lsj-disk-check-{}", std::process::id()));
    mount(&dir, "lsjdisk-check-0").map_err(|error| format!("cannot mount a tmpfs: {error}"))?;
    let target = format!("of={}", dir.join("direct").display());
    let direct = run("dd", &["if=/dev/zero", &target, "bs=4096", "count=1", "oflag=direct"]);
    unmount(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    direct.map_err(|error| format!("tmpfs does not take O_DIRECT writes here (Linux 6.6 or later does): {error}"))
}

/// Deletes the filler file of `dir`, if any.
pub fn free(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(FILLER));
}

/// Mount points of our data file systems whose run `stale` says is over.
pub fn stale_mounts(stale: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (source, target) = (fields.next()?, fields.next()?);
            parse_source_name(source).filter(|run_id| stale(run_id)).map(|_| PathBuf::from(target))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names() {
        assert_eq!(source_name("1a2b", 3), "lsjdisk-1a2b-3");
        assert_eq!(parse_source_name("lsjdisk-1a2b-3"), Some("1a2b".to_owned()));
        for other in ["tmpfs", "lsjdisk-", "lsjdisk-1a2b", "lsjdisk-XY-1", "lsjdisk-1a2b-x", "lsj-1a2b-3"] {
            assert_eq!(parse_source_name(other), None, "{other}");
        }
    }

    #[test]
    fn fill_and_free_a_directory() {
        // On an ordinary file system this would fill the disk, so only check
        // the filler's bookkeeping on a tmpfs when we may mount one.
        let dir = std::env::temp_dir().join(format!("lsj-disk-test-{}", std::process::id()));
        if mount(&dir, "lsjdisk-test-1").is_err() {
            eprintln!("SKIP fill_and_free_a_directory: cannot mount a tmpfs here");
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }
        let written = fill(&dir).expect("fill");
        assert!(written > DISK_BYTES - (1 << 20) && written <= DISK_BYTES, "{written}");
        assert!(std::fs::write(dir.join("more"), b"x").is_err(), "the file system is full");
        free(&dir);
        std::fs::write(dir.join("more"), b"x").expect("room again after free");
        unmount(&dir);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
