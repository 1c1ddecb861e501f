//! The state machines a simulated member can run: core's register (the default)
//! or the etcd-style MVCC key-value store (`lockstep_core::kv::KvStore` over
//! `MemStorage`). [`SimMachine`] dispatches every [`StateMachine`] method, the
//! leader duties included, to the chosen one.

use lockstep_core::kv::{KvCommand, KvConfig, KvStore, MemStorage, PutRequest};
use lockstep_core::register::{Register, RegisterCommand};
use lockstep_core::state_machine::RestoreError;
use lockstep_core::{LogIndex, Millis, Payload, StateMachine};

/// Which state machine the members run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MachineKind {
    /// `lockstep_core::register::Register`.
    #[default]
    Register,
    /// `lockstep_core::kv::KvStore<MemStorage>`, opened with `KvConfig::default()`
    /// except lease checkpoints every 2 s.
    Kv,
}

impl MachineKind {
    /// Every kind.
    pub const ALL: [MachineKind; 2] = [MachineKind::Register, MachineKind::Kv];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MachineKind::Register => "register",
            MachineKind::Kv => "kv",
        }
    }

    /// The kind called `name`.
    pub fn from_name(name: &str) -> Option<MachineKind> {
        MachineKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// A fresh, empty state machine of this kind.
    pub fn build(self) -> SimMachine {
        self.build_on(None)
    }

    /// A state machine of this kind; the KV store opens `storage` (what a
    /// crash left of its previous incarnation's, see
    /// [`SimMachine::into_kv_storage`]) or empty storage.
    pub fn build_on(self, storage: Option<MemStorage>) -> SimMachine {
        match self {
            MachineKind::Register => SimMachine::Register(Register::new()),
            MachineKind::Kv => SimMachine::Kv(Box::new(
                // Lease checkpoints every 2 s, so that runs of seconds exercise them.
                KvStore::open(
                    KvConfig { lease_checkpoint_interval_ms: 2_000, ..KvConfig::default() },
                    storage.unwrap_or_default(),
                )
                .expect("the KV store's storage opens"),
            )),
        }
    }

    /// A command that sets `key` to `value` (a put of its decimal string for the
    /// KV store), for probes and scripted writes.
    pub fn write_command(self, key: &str, value: i64) -> Vec<u8> {
        match self {
            MachineKind::Register => RegisterCommand::Write { key: key.into(), value }.encode(),
            MachineKind::Kv => KvCommand::Put(PutRequest {
                key: key.as_bytes().to_vec(),
                value: value.to_string().into_bytes(),
                ..PutRequest::default()
            })
            .encode(),
        }
    }
}

impl std::fmt::Display for MachineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The state machine of a simulated member.
#[derive(Debug)]
pub enum SimMachine {
    /// The register.
    Register(Register),
    /// The MVCC key-value store.
    Kv(Box<KvStore<MemStorage>>),
}

impl SimMachine {
    /// The KV store's storage (`None` for the register, whose state lives in
    /// snapshots only).
    pub fn into_kv_storage(self) -> Option<MemStorage> {
        match self {
            SimMachine::Register(_) => None,
            SimMachine::Kv(store) => Some(store.into_storage()),
        }
    }
}

impl StateMachine for SimMachine {
    fn apply(&mut self, index: LogIndex, payload: &Payload) -> Vec<u8> {
        match self {
            SimMachine::Register(m) => m.apply(index, payload),
            SimMachine::Kv(m) => m.apply(index, payload),
        }
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        match self {
            SimMachine::Register(m) => m.query(query),
            SimMachine::Kv(m) => m.query(query),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        match self {
            SimMachine::Register(m) => m.snapshot(),
            SimMachine::Kv(m) => m.snapshot(),
        }
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        match self {
            SimMachine::Register(m) => m.restore(data),
            SimMachine::Kv(m) => m.restore(data),
        }
    }

    fn checkpoint(&mut self, index: LogIndex) -> Option<Vec<u8>> {
        match self {
            SimMachine::Register(m) => m.checkpoint(index),
            SimMachine::Kv(m) => m.checkpoint(index),
        }
    }

    fn validate(&self, command: &[u8]) -> Result<(), String> {
        match self {
            SimMachine::Register(m) => m.validate(command),
            SimMachine::Kv(m) => m.validate(command),
        }
    }

    fn on_leadership(&mut self, now: Millis, leader: bool) {
        match self {
            SimMachine::Register(m) => m.on_leadership(now, leader),
            SimMachine::Kv(m) => m.on_leadership(now, leader),
        }
    }

    fn leader_proposals(&mut self, now: Millis, max: usize) -> Vec<Vec<u8>> {
        match self {
            SimMachine::Register(m) => m.leader_proposals(now, max),
            SimMachine::Kv(m) => m.leader_proposals(now, max),
        }
    }

    fn next_deadline(&self) -> Option<Millis> {
        match self {
            SimMachine::Register(m) => m.next_deadline(),
            SimMachine::Kv(m) => m.next_deadline(),
        }
    }

    fn leader_request(&mut self, now: Millis, request: &[u8]) -> Vec<u8> {
        match self {
            SimMachine::Register(m) => m.leader_request(now, request),
            SimMachine::Kv(m) => m.leader_request(now, request),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_core::kv::{decode_reply, KvQuery, KvResponse, RangeRequest};

    #[test]
    fn names_round_trip() {
        for kind in MachineKind::ALL {
            assert_eq!(MachineKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(MachineKind::from_name("etcd"), None);
        assert_eq!(MachineKind::default(), MachineKind::Register);
    }

    #[test]
    fn kv_write_command_puts_a_decimal_string() {
        let mut machine = MachineKind::Kv.build();
        let command = MachineKind::Kv.write_command("k1", -42);
        machine.validate(&command).expect("valid");
        let reply = machine.apply(1, &Payload::Command(command.clone()));
        assert!(matches!(decode_reply(&reply), Ok(Ok(KvResponse::Put(_)))));
        let query = KvQuery::Range(RangeRequest { key: b"k1".to_vec(), ..RangeRequest::default() }).encode();
        let Ok(Ok(KvResponse::Range(range))) = decode_reply(&machine.query(&query)) else { panic!("not a range") };
        assert_eq!(range.kvs.len(), 1);
        assert_eq!(range.kvs[0].value, b"-42");
        // The register refuses the KV encoding and the other way round.
        assert!(MachineKind::Register.build().validate(&command).is_err());
        assert!(machine.validate(&MachineKind::Register.write_command("k1", 1)).is_err());
    }
}
