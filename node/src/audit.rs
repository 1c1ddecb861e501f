//! The audit log file (`audit.file`): one JSON line per security-relevant
//! event (format: [`lockstep_api::audit`], `docs/security.md`).
//!
//! The member's executor never writes the file itself: [`AuditLog::record`]
//! formats the line and hands it to a writer thread over a bounded channel.
//! The writer appends what it receives, flushes to the operating system as
//! soon as the channel is empty (a crash of the process loses nothing the
//! writer received), and fsyncs at most [`SYNC_INTERVAL`] after a write (a
//! power cut loses at most that much). [`AuditLog::close`], called when the
//! member stops, flushes and fsyncs everything recorded before it returns, so
//! a clean shutdown loses no line of an event that was answered.
//!
//! A full channel ([`QUEUE_LINES_MAX`] lines waiting: the disk is stuck)
//! makes `record` wait for room rather than drop a line: an audit log that
//! silently loses events is worse than a member that slows down. A failed
//! write is logged and counted in `lockstep_audit_write_failures_total`; the
//! writer goes on with the next line.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use lockstep_api::audit::{audit_line, AuditEvent, AuditMember, AuditSink};
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

/// The longest a written line waits for its fsync.
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Lines waiting for the writer thread before `record` waits for room.
pub const QUEUE_LINES_MAX: usize = 65_536;

/// The writer of one member's audit log. Shared by the member's services;
/// [`AuditLog::close`] ends it.
pub struct AuditLog {
    path: PathBuf,
    member: AuditMember,
    sender: Mutex<Option<SyncSender<String>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    events: IntCounterVec,
    write_failures: IntCounter,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").field("path", &self.path).field("member", &self.member).finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Opens (creating it with mode 0600 if needed) the audit log at `path`
    /// for appending, and starts its writer thread.
    pub fn open(path: &Path, member: AuditMember) -> io::Result<AuditLog> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file =
            options.open(path).map_err(|e| io::Error::new(e.kind(), format!("audit.file {}: {e}", path.display())))?;
        let events = IntCounterVec::new(
            Opts::new("lockstep_audit_events_total", "Events recorded in the audit log, by event."),
            &["event"],
        )
        .expect("a valid metric");
        let write_failures = IntCounter::new(
            "lockstep_audit_write_failures_total",
            "Audit log lines that could not be written or synced.",
        )
        .expect("a valid metric");
        let (sender, receiver) = mpsc::sync_channel(QUEUE_LINES_MAX);
        let writer = {
            let (path, failures) = (path.to_path_buf(), write_failures.clone());
            std::thread::Builder::new()
                .name(format!("audit-{}", member.id))
                .spawn(move || write_lines(file, &path, &receiver, &failures))?
        };
        Ok(AuditLog {
            path: path.to_path_buf(),
            member,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            events,
            write_failures,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds the audit metrics to a member's registry.
    pub fn register(&self, registry: &Registry) {
        for metric in [
            Box::new(self.events.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(self.write_failures.clone()),
        ] {
            if let Err(e) = registry.register(metric) {
                tracing::warn!(error = %e, "audit metrics not registered");
            }
        }
    }

    /// Appends `line` (sent to the writer thread).
    fn send(&self, line: String) {
        let sender = self.sender.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let Some(sender) = sender else {
            tracing::error!(line, "audit log closed; event not recorded");
            self.write_failures.inc();
            return;
        };
        match sender.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(line)) => {
                tracing::warn!(path = %self.path.display(), "audit log queue full: waiting for the disk");
                if sender.send(line).is_err() {
                    self.write_failures.inc();
                }
            }
            Err(TrySendError::Disconnected(_)) => self.write_failures.inc(),
        }
    }

    /// Stops the writer after it wrote, flushed and fsynced every line
    /// recorded before; later events are counted as write failures.
    pub fn close(&self) {
        drop(self.sender.lock().unwrap_or_else(PoisonError::into_inner).take());
        if let Some(writer) = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take() {
            if writer.join().is_err() {
                tracing::error!(path = %self.path.display(), "the audit log writer panicked");
            }
        }
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl AuditSink for AuditLog {
    fn record(&self, event: AuditEvent) {
        self.events.with_label_values(&[event.event]).inc();
        self.send(audit_line(SystemTime::now(), &self.member, &event));
    }
}

/// An [`AuditLog`] shared between threads, as the API's sink (the writer
/// is opened before the member's executor starts).
#[derive(Debug, Clone)]
pub struct SharedAuditLog(pub Arc<AuditLog>);

impl AuditSink for SharedAuditLog {
    fn record(&self, event: AuditEvent) {
        self.0.record(event);
    }
}

/// The writer thread: appends lines until every sender is gone; see the
/// module doc for when it flushes and syncs.
fn write_lines(file: File, path: &Path, lines: &mpsc::Receiver<String>, failures: &IntCounter) {
    let mut out = BufWriter::new(file);
    let mut unsynced_since: Option<Instant> = None;
    let fail = |what: &str, e: &io::Error| {
        failures.inc();
        tracing::error!(path = %path.display(), error = %e, "audit log: {what} failed");
    };
    let write = |out: &mut BufWriter<File>, line: String| {
        let mut line = line.into_bytes();
        line.push(b'\n');
        if let Err(e) = out.write_all(&line) {
            fail("write", &e);
        }
    };
    loop {
        let wait = unsynced_since.map_or(Duration::from_secs(3600), |t| SYNC_INTERVAL.saturating_sub(t.elapsed()));
        let closed = match lines.recv_timeout(wait) {
            Ok(line) => {
                write(&mut out, line);
                while let Ok(line) = lines.try_recv() {
                    write(&mut out, line);
                }
                if let Err(e) = out.flush() {
                    fail("flush", &e);
                }
                unsynced_since.get_or_insert_with(Instant::now);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let due = unsynced_since.is_some_and(|t| t.elapsed() >= SYNC_INTERVAL);
        if closed || due {
            if let Err(e) = out.flush() {
                fail("flush", &e);
            }
            if unsynced_since.take().is_some() {
                if let Err(e) = out.get_ref().sync_data() {
                    fail("fsync", &e);
                }
            }
        }
        if closed {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use lockstep_api::audit::Outcome;
    use serde_json::{json, Value};

    use super::*;

    fn event(name: &'static str, n: u64) -> AuditEvent {
        AuditEvent {
            event: name,
            user: "root".into(),
            source: "127.0.0.1:1".into(),
            outcome: Outcome::Ok,
            detail: json!({ "n": n }),
        }
    }

    #[test]
    fn close_writes_every_recorded_line_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        std::fs::write(&path, "{\"earlier\":true}\n").unwrap();
        let log = AuditLog::open(&path, AuditMember { id: 7, name: "m7".into() }).unwrap();
        let registry = Registry::new();
        log.register(&registry);
        for n in 0..1000 {
            log.record(event(if n % 2 == 0 { "user_add" } else { "authenticate" }, n));
        }
        log.close();
        log.record(event("late", 0));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 1001, "appended after what was there");
        assert_eq!(lines[0], json!({ "earlier": true }));
        for (n, line) in lines[1..].iter().enumerate() {
            assert_eq!(line["detail"]["n"], n as u64);
            assert_eq!(line["member"], json!({ "id": "7", "name": "m7" }));
        }
        assert_eq!(log.events.with_label_values(&["user_add"]).get(), 500);
        assert_eq!(log.write_failures.get(), 1, "the event after close");
        let rendered = registry.gather();
        assert!(rendered.iter().any(|f| f.name() == "lockstep_audit_events_total"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let fresh = dir.path().join("fresh.log");
            drop(AuditLog::open(&fresh, AuditMember { id: 1, name: "m1".into() }).unwrap());
            assert_eq!(std::fs::metadata(&fresh).unwrap().permissions().mode() & 0o777, 0o600);
        }
    }

    #[test]
    fn lines_reach_the_file_before_close() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, AuditMember { id: 1, name: "m1".into() }).unwrap();
        log.record(event("auth_enable", 1));
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(&path).unwrap().lines().count() < 1 {
            assert!(Instant::now() < deadline, "the line was not flushed promptly");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn an_unwritable_path_is_a_clear_error() {
        let error = AuditLog::open(Path::new("/nonexistent-dir/audit.log"), AuditMember { id: 1, name: "m".into() })
            .unwrap_err();
        assert!(error.to_string().contains("audit.file /nonexistent-dir/audit.log"), "{error}");
    }
}
