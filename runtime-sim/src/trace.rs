//! The run's trace: a deterministic hash of everything every member stepped and
//! emitted, plus a ring buffer of the latest records for failure reports.

use std::collections::VecDeque;
use std::fmt;
use std::hash::{Hash, Hasher};

use lockstep_core::{Command, Event, Millis, NodeId};

/// FNV-1a, 64 bit, fed 8 bytes at a time (integers as one word, slices in 8-byte
/// chunks): a fast hasher without random keys, so equal runs hash equally.
#[derive(Debug, Clone, Copy)]
pub struct Fnv64(u64);

impl Fnv64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// A hasher in its initial state.
    pub fn new() -> Fnv64 {
        Fnv64(Self::OFFSET)
    }
}

impl Default for Fnv64 {
    fn default() -> Self {
        Fnv64::new()
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut hash = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let mut word = [0; 8];
            word.copy_from_slice(chunk);
            hash ^= u64::from_le_bytes(word);
            hash = hash.wrapping_mul(Self::PRIME);
        }
        for byte in chunks.remainder() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(Self::PRIME);
        }
        self.0 = hash;
    }

    fn write_u8(&mut self, value: u8) {
        self.write_u64(u64::from(value));
    }

    fn write_u32(&mut self, value: u32) {
        self.write_u64(u64::from(value));
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0 ^ value).wrapping_mul(Self::PRIME);
    }

    fn write_usize(&mut self, value: usize) {
        self.write_u64(value as u64);
    }
}

/// Hashes one value with [`Fnv64`].
pub fn fnv_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut hasher = Fnv64::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// What one trace record says happened.
#[derive(Debug, Clone)]
pub enum TraceWhat {
    /// A member stepped an event.
    Step(Event),
    /// A member emitted a command.
    Command(Command),
    /// The simulator did something: a fault, a crash, a restart.
    Note(String),
    /// A command being executed.
    Pending,
}

/// One trace record.
#[derive(Debug, Clone)]
pub struct TraceRecord {
    /// Position in the whole run's trace.
    pub seq: u64,
    /// Simulated time since the start of the run, in microseconds.
    pub sim_us: u64,
    /// The member concerned (0 for cluster-wide notes).
    pub member: NodeId,
    /// The member's local clock (0 for notes).
    pub now: Millis,
    /// What happened.
    pub what: TraceWhat,
}

/// The longest rendering of one record in a report, in characters.
const RECORD_CHARS_MAX: usize = 240;

impl fmt::Display for TraceRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.what {
            TraceWhat::Step(event) => format!("step {event:?}"),
            TraceWhat::Command(command) => format!("  -> {command:?}"),
            TraceWhat::Note(note) => format!("** {note}"),
            TraceWhat::Pending => "  -> (command being executed)".to_string(),
        };
        let what: String = if what.chars().count() > RECORD_CHARS_MAX {
            what.chars().take(RECORD_CHARS_MAX).chain("…".chars()).collect()
        } else {
            what
        };
        write!(
            f,
            "#{:<8} t={:>6}.{:03}ms n{} now={} {}",
            self.seq,
            self.sim_us / 1000,
            self.sim_us % 1000,
            self.member,
            self.now,
            what
        )
    }
}

/// The hash of a whole run and its latest records.
#[derive(Debug)]
pub struct Trace {
    hasher: Fnv64,
    ring: VecDeque<TraceRecord>,
    ring_len_max: usize,
    records: u64,
}

impl Trace {
    /// An empty trace keeping the last `ring_len_max` records.
    pub fn new(ring_len_max: usize) -> Trace {
        Trace { hasher: Fnv64::new(), ring: VecDeque::with_capacity(ring_len_max), ring_len_max, records: 0 }
    }

    fn push(&mut self, sim_us: u64, member: NodeId, now: Millis, what: TraceWhat) {
        if self.ring_len_max == 0 {
            return;
        }
        if self.ring.len() == self.ring_len_max {
            self.ring.pop_front();
        }
        self.ring.push_back(TraceRecord { seq: self.records - 1, sim_us, member, now, what });
    }

    /// Records that `member` stepped `event` at local time `now`.
    pub fn step(&mut self, sim_us: u64, member: NodeId, now: Millis, event: &Event) {
        (0_u8, member, now, event).hash(&mut self.hasher);
        self.records += 1;
        self.push(sim_us, member, now, TraceWhat::Step(event.clone()));
    }

    /// Records that `member` emitted `command` (kept for the report once executed).
    pub fn command(&mut self, sim_us: u64, member: NodeId, now: Millis, command: &Command) {
        (1_u8, member, now, command).hash(&mut self.hasher);
        self.records += 1;
        self.push(sim_us, member, now, TraceWhat::Pending);
    }

    /// Hands the command recorded last to the ring, after the driver executed it
    /// (so the ring does not need a copy of every message).
    pub fn executed(&mut self, command: Command) {
        if let Some(last) = self.ring.back_mut() {
            if matches!(last.what, TraceWhat::Pending) {
                last.what = TraceWhat::Command(command);
            }
        }
    }

    /// Records a simulator action (hashed too: faults are part of the run).
    pub fn note(&mut self, sim_us: u64, member: NodeId, note: String) {
        (2_u8, member, note.as_str()).hash(&mut self.hasher);
        self.records += 1;
        self.push(sim_us, member, 0, TraceWhat::Note(note));
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hasher.finish()
    }

    /// How many records were hashed.
    pub fn len(&self) -> u64 {
        self.records
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The latest records, oldest first.
    pub fn tail(&self) -> Vec<TraceRecord> {
        self.ring.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_input_matches_fnv1a_and_hashes_are_stable() {
        let mut hasher = Fnv64::new();
        hasher.write(b"a");
        assert_eq!(hasher.finish(), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv_hash(&(1_u64, "x")), fnv_hash(&(1_u64, "x")));
        assert_ne!(fnv_hash(&[1_u8, 2]), fnv_hash(&[2_u8, 1]));
    }

    #[test]
    fn ring_keeps_the_latest_records() {
        let mut trace = Trace::new(2);
        for i in 0..5 {
            trace.note(i, 0, format!("n{i}"));
        }
        let tail = trace.tail();
        assert_eq!(tail.len(), 2);
        assert_eq!(tail[0].seq, 3);
        assert_eq!(trace.len(), 5);
    }
}
