//! `storage-bench`: the WAL executor's group commit against the disk's raw
//! synchronous write rate, and `FjallStorage` with a million keys.
//!
//! ```text
//! cargo run --release -p lockstep-runtime --bin storage-bench [-- --quick] [--dir DIR]
//! ```
//!
//! `--dir` chooses where the files go (default: a temporary directory under the
//! system's temp dir, which should be on the disk under test). See
//! `docs/storage-benchmarks.md` for the method and results.

use std::cell::{Cell, RefCell};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::{LocalExecutorBuilder, Placement};
use lockstep_core::kv::{Storage, WriteBatch};
use lockstep_core::wal::{WalConfig, WalIdentity};
use lockstep_core::{Command, Entry, HardState, Payload};
use lockstep_runtime::{FjallStorage, Wal};

const ID: WalIdentity = WalIdentity { cluster_id: 1, member_id: 1, group_id: 1 };
const ENTRY_PAYLOAD_LEN: usize = 256;
const BLOCK_LEN: usize = 4096;

struct Options {
    quick: bool,
    dir: Option<PathBuf>,
}

fn options() -> Options {
    let mut options = Options { quick: false, dir: None };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => options.quick = true,
            "--dir" => options.dir = Some(PathBuf::from(args.next().expect("--dir needs a path"))),
            "-h" | "--help" => {
                println!("storage-bench [--quick] [--dir DIR]");
                std::process::exit(0);
            }
            other => panic!("unknown argument {other:?} (try --help)"),
        }
    }
    options
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn dir_bytes(path: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(path).into_iter().flatten().flatten() {
        let meta = entry.metadata().expect("metadata");
        total += if meta.is_dir() { dir_bytes(&entry.path()) } else { meta.len() };
    }
    total
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One 4 KiB block, aligned for `O_DIRECT`, inside a larger vector.
fn aligned_block(storage: &mut Vec<u8>) -> &mut [u8] {
    storage.resize(2 * BLOCK_LEN, 0);
    let offset = storage.as_ptr().align_offset(BLOCK_LEN);
    &mut storage[offset..offset + BLOCK_LEN]
}

/// Sequential 4 KiB `O_DIRECT | O_DSYNC` writes for `duration`, like
/// `dd if=/dev/zero of=FILE bs=4k oflag=direct,dsync`; with `overwrite`, into a
/// file written beforehand (no allocation, no size change per write).
fn raw_dsync_writes(dir: &Path, duration: Duration, overwrite: bool) -> f64 {
    let path = dir.join(if overwrite { "raw-overwrite" } else { "raw-append" });
    let blocks_max = 64 * 1024u64; // 256 MiB
    if overwrite {
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(&path).expect("creates");
        let chunk = vec![1u8; 1 << 20];
        for i in 0..(blocks_max * BLOCK_LEN as u64) >> 20 {
            file.write_all_at(&chunk, i << 20).expect("fills");
        }
        file.sync_all().expect("syncs");
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(!overwrite)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(&path)
        .expect("opens with O_DIRECT | O_DSYNC");
    let mut storage = Vec::new();
    let block = aligned_block(&mut storage);
    block.fill(0xAB);
    let start = Instant::now();
    let mut writes = 0u64;
    while start.elapsed() < duration && writes < blocks_max {
        file.write_all_at(block, writes * BLOCK_LEN as u64).expect("writes");
        writes += 1;
    }
    let rate = writes as f64 / start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path).expect("removes");
    rate
}

struct WalRun {
    proposers: u64,
    entries_per_sync: u64,
    syncs_per_s: f64,
    entries_per_s: f64,
    fsyncs_per_s: f64,
    payload_mib_per_s: f64,
    written_mib_per_s: f64,
    written_bytes_per_fsync: f64,
    latency_us_p50: u32,
    latency_us_p99: u32,
}

/// `proposers` tasks, each appending `entries_per_sync` entries of 256 B, then a
/// sync, then waiting for it, until `duration` has passed.
fn wal_run(dir: &Path, proposers: u64, entries_per_sync: u64, duration: Duration) -> WalRun {
    let path = dir.join(format!("wal-{proposers}-{entries_per_sync}"));
    let config = WalConfig { segment_size_max: 64 << 20, preallocate: true, ..WalConfig::default() };
    let run = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(4 << 20)
        .make()
        .expect("a glommio executor starts")
        .run(async move {
            let (wal, _) = Wal::open(&path, ID, config).await.expect("opens");
            wal.submit(&Command::SaveHardState(HardState { term: 1, vote: Some(1) })).expect("accepted");
            // (next index, next sync id)
            let next = Rc::new(Cell::new((1u64, 1u64)));
            let latencies = Rc::new(RefCell::new(Vec::new()));
            let start = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..proposers {
                let (wal, next, latencies) = (wal.clone(), next.clone(), latencies.clone());
                tasks.push(glommio::spawn_local(async move {
                    while start.elapsed() < duration {
                        let (index, sync) = next.get();
                        next.set((index + entries_per_sync, sync + 1));
                        let entries = (index..index + entries_per_sync)
                            .map(|index| Entry {
                                term: 1,
                                index,
                                payload: Payload::Command(vec![7; ENTRY_PAYLOAD_LEN]),
                            })
                            .collect();
                        let began = Instant::now();
                        wal.submit(&Command::AppendLog(entries)).expect("accepted");
                        wal.submit(&Command::Sync { id: sync }).expect("accepted");
                        wal.wait_persisted(sync).await.expect("syncs");
                        latencies.borrow_mut().push(began.elapsed().as_micros() as u32);
                    }
                }));
            }
            for task in tasks {
                task.await;
            }
            let elapsed = start.elapsed().as_secs_f64();
            let stats = wal.stats();
            wal.close().await.expect("closes");
            let mut latencies = latencies.take();
            latencies.sort_unstable();
            let syncs = latencies.len() as f64;
            WalRun {
                proposers,
                entries_per_sync,
                syncs_per_s: syncs / elapsed,
                entries_per_s: syncs * entries_per_sync as f64 / elapsed,
                fsyncs_per_s: stats.group_commits as f64 / elapsed,
                payload_mib_per_s: mib((syncs as u64) * entries_per_sync * ENTRY_PAYLOAD_LEN as u64) / elapsed,
                written_mib_per_s: mib(stats.bytes_written) / elapsed,
                written_bytes_per_fsync: stats.bytes_written as f64 / stats.group_commits.max(1) as f64,
                latency_us_p50: percentile(&latencies, 0.5),
                latency_us_p99: percentile(&latencies, 0.99),
            }
        });
    std::fs::remove_dir_all(dir.join(format!("wal-{proposers}-{entries_per_sync}"))).expect("removes");
    run
}

fn fjall_bench(dir: &Path, keys: u64) {
    let path = dir.join("fjall");
    let rss_before = rss_bytes();
    let mut storage = FjallStorage::open(&path).expect("opens");
    let start = Instant::now();
    let batch_len = 1_000;
    let mut value = vec![0u8; 256];
    for batch_start in (0..keys).step_by(batch_len) {
        let mut batch = WriteBatch::new(batch_start / batch_len as u64 + 1);
        for i in batch_start..(batch_start + batch_len as u64).min(keys) {
            value[..8].copy_from_slice(&i.to_le_bytes());
            batch.put(format!("key/{i:012}").into_bytes(), value.clone());
        }
        storage.write(batch);
    }
    storage.sync();
    let load_s = start.elapsed().as_secs_f64();
    let rss_loaded = rss_bytes();
    println!(
        "fjall load: {keys} keys x 256 B in batches of {batch_len}: {load_s:.2} s, {:.0} keys/s, {:.1} MiB/s of values",
        keys as f64 / load_s,
        mib(keys * 256) / load_s
    );

    let start = Instant::now();
    let mut seen = 0u64;
    let mut bytes = 0u64;
    storage.scan(b"key/", None, &mut |k, v| {
        seen += 1;
        bytes += (k.len() + v.len()) as u64;
        true
    });
    let scan_s = start.elapsed().as_secs_f64();
    assert_eq!(seen, keys);
    println!(
        "fjall range over all {keys} keys: {:.3} s, {:.2} M keys/s, {:.0} MiB/s",
        scan_s,
        seen as f64 / scan_s / 1e6,
        mib(bytes) / scan_s
    );

    let probes = 2_000u64;
    let start = Instant::now();
    let mut total = 0u64;
    for p in 0..probes {
        let first = (p.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % keys.saturating_sub(1_000).max(1);
        let mut n = 0;
        storage.scan(format!("key/{first:012}").as_bytes(), None, &mut |_, _| {
            n += 1;
            n < 1_000
        });
        total += n;
    }
    let limited_s = start.elapsed().as_secs_f64();
    println!(
        "fjall ranges of 1000 keys from {probes} random starts: {:.0} ranges/s, {:.2} M keys/s ({:.0} us each)",
        probes as f64 / limited_s,
        total as f64 / limited_s / 1e6,
        limited_s / probes as f64 * 1e6
    );

    let gets = 100_000u64;
    let start = Instant::now();
    for p in 0..gets {
        let i = (p.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11) % keys;
        assert!(storage.get(format!("key/{i:012}").as_bytes()).is_some());
    }
    let get_s = start.elapsed().as_secs_f64();
    println!("fjall random gets: {:.0} gets/s", gets as f64 / get_s);

    let disk = storage.disk_space();
    drop(storage);
    let files = dir_bytes(&path);
    println!(
        "fjall footprint for {keys} keys x 256 B ({:.0} MiB of keys and values): RSS +{:.0} MiB while open \
         (process {:.0} MiB), disk {:.0} MiB (fjall's count), files after close {:.0} MiB",
        mib(keys * (256 + 16)),
        mib(rss_loaded.saturating_sub(rss_before)),
        mib(rss_loaded),
        mib(disk),
        mib(files)
    );
    std::fs::remove_dir_all(&path).expect("removes");
}

fn main() {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let options = options();
    let temp = match &options.dir {
        Some(dir) => tempfile::tempdir_in(dir),
        None => tempfile::tempdir(),
    }
    .expect("a temporary directory");
    let dir = temp.path();
    let (wal_s, raw_s, reps, keys) = if options.quick { (1.0, 1.0, 1, 200_000) } else { (3.0, 2.0, 2, 1_000_000) };
    println!(
        "storage-bench{}: files in {} ({} cores)",
        if options.quick { " --quick" } else { "" },
        dir.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let raw_overwrite = raw_dsync_writes(dir, Duration::from_secs_f64(raw_s), true);
    println!("raw O_DIRECT|O_DSYNC 4 KiB writes, overwriting a written file: {raw_overwrite:.0} writes/s");
    println!(
        "\nWAL, 256 B entries, each proposer waits for its sync; every row is preceded by its own raw baseline \
         (O_DIRECT|O_DSYNC 4 KiB appends, like dd oflag=direct,dsync) on the same disk, and the ratios are \
         against it\n\
         {:>4} {:>9} {:>8} {:>9} {:>10} {:>11} {:>10} {:>7} {:>10} {:>10} {:>10} {:>8} {:>8} {:>7} {:>8}",
        "rep",
        "proposers",
        "ent/sync",
        "raw w/s",
        "syncs/s",
        "entries/s",
        "fsyncs/s",
        "ent/fs",
        "data MiB/s",
        "disk MiB/s",
        "disk B/fs",
        "p50 us",
        "p99 us",
        "fs/raw",
        "sync/raw"
    );
    for rep in 1..=reps {
        for (proposers, entries_per_sync) in [(1, 1), (8, 1), (64, 1), (1, 256)] {
            let raw = raw_dsync_writes(dir, Duration::from_secs_f64(raw_s), false);
            let r = wal_run(dir, proposers, entries_per_sync, Duration::from_secs_f64(wal_s));
            println!(
                "{:>4} {:>9} {:>8} {:>9.0} {:>10.0} {:>11.0} {:>10.0} {:>7.1} {:>10.2} {:>10.2} {:>10.0} {:>8} {:>8} {:>7.2} {:>8.2}",
                rep,
                r.proposers,
                r.entries_per_sync,
                raw,
                r.syncs_per_s,
                r.entries_per_s,
                r.fsyncs_per_s,
                r.entries_per_s / r.fsyncs_per_s,
                r.payload_mib_per_s,
                r.written_mib_per_s,
                r.written_bytes_per_fsync,
                r.latency_us_p50,
                r.latency_us_p99,
                r.fsyncs_per_s / raw,
                r.syncs_per_s / raw
            );
        }
    }
    println!();
    fjall_bench(dir, keys);
}
