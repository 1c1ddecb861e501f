//! A small multi-key register with compare-and-set: the state machine the
//! simulator's linearizability checks run against until the MVCC store plugs in.

use std::collections::BTreeMap;

use rkyv::rancor;
use rkyv::util::AlignedVec;
use rkyv::{Archive, Deserialize, Serialize};

use crate::raft::message::Payload;
use crate::state_machine::{RestoreError, StateMachine};
use crate::types::LogIndex;

/// A write to the register store.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]

pub enum RegisterCommand {
    /// Sets `key` to `value`.
    Write {
        /// The register.
        key: String,
        /// The new value.
        value: i64,
    },
    /// Sets `key` to `new` if it currently holds `expected`.
    Cas {
        /// The register.
        key: String,
        /// The value the register must hold.
        expected: i64,
        /// The value to set.
        new: i64,
    },
}

/// A read of the register store.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]

pub struct RegisterQuery {
    /// The register to read.
    pub key: String,
}

/// The outcome of a command or query.
#[derive(Archive, Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]

pub enum RegisterResult {
    /// The write or successful compare-and-set took effect.
    Ok,
    /// The compare-and-set did not match; the register holds `current`.
    CasFailed {
        /// The value found.
        current: Option<i64>,
    },
    /// The value read (`None` if never written).
    Value(Option<i64>),
    /// The input could not be decoded.
    Malformed,
}

fn to_bytes<T>(value: &T) -> Vec<u8>
where
    T: for<'a> Serialize<
        rkyv::api::high::HighSerializer<AlignedVec, rkyv::ser::allocator::ArenaHandle<'a>, rancor::Error>,
    >,
{
    rkyv::to_bytes::<rancor::Error>(value).expect("in-memory values always serialize").to_vec()
}

fn aligned(bytes: &[u8]) -> AlignedVec {
    let mut out = AlignedVec::with_capacity(bytes.len());
    out.extend_from_slice(bytes);
    out
}

macro_rules! bytes_codec {
    ($ty:ty) => {
        impl $ty {
            /// Encodes for the log or the wire.
            pub fn encode(&self) -> Vec<u8> {
                to_bytes(self)
            }

            /// Decodes bytes from [`Self::encode`]; hostile bytes give an error.
            pub fn decode(bytes: &[u8]) -> Result<Self, String> {
                rkyv::from_bytes::<Self, rancor::Error>(&aligned(bytes)).map_err(|e| e.to_string())
            }
        }
    };
}

bytes_codec!(RegisterCommand);
bytes_codec!(RegisterQuery);
bytes_codec!(RegisterResult);

/// Keys longer than this are refused.
pub const KEY_BYTES_MAX: usize = 1024;

/// The register store: a sorted map from key to value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Register {
    values: BTreeMap<String, i64>,
    applied: LogIndex,
}

impl Register {
    /// An empty store.
    pub fn new() -> Register {
        Register::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.values.get(key).copied()
    }

    /// The index of the last applied entry.
    pub fn applied(&self) -> LogIndex {
        self.applied
    }

    /// Every register, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.values.iter().map(|(k, v)| (k.as_str(), *v))
    }
}

impl StateMachine for Register {
    fn apply(&mut self, index: LogIndex, payload: &Payload) -> Vec<u8> {
        assert!(index > self.applied, "applying {index} after {}", self.applied);
        self.applied = index;
        let Payload::Command(bytes) = payload else { return RegisterResult::Ok.encode() };
        let result = match RegisterCommand::decode(bytes) {
            Err(_) => RegisterResult::Malformed,
            Ok(RegisterCommand::Write { key, value }) => {
                self.values.insert(key, value);
                RegisterResult::Ok
            }
            Ok(RegisterCommand::Cas { key, expected, new }) => match self.values.get_mut(&key) {
                Some(current) if *current == expected => {
                    *current = new;
                    RegisterResult::Ok
                }
                current => RegisterResult::CasFailed { current: current.copied() },
            },
        };
        result.encode()
    }

    fn query(&self, query: &[u8]) -> Vec<u8> {
        match RegisterQuery::decode(query) {
            Ok(q) => RegisterResult::Value(self.get(&q.key)).encode(),
            Err(_) => RegisterResult::Malformed.encode(),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let pairs: Vec<(String, i64)> = self.values.iter().map(|(k, v)| (k.clone(), *v)).collect();
        let mut out = self.applied.to_le_bytes().to_vec();
        out.extend_from_slice(&to_bytes(&pairs));
        out
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), RestoreError> {
        if data.len() < 8 {
            return Err(RestoreError("register snapshot shorter than its header".into()));
        }
        let (head, body) = data.split_at(8);
        let applied = u64::from_le_bytes(head.try_into().map_err(|_| RestoreError("bad header".into()))?);
        let pairs = rkyv::from_bytes::<Vec<(String, i64)>, rancor::Error>(&aligned(body))
            .map_err(|e| RestoreError(e.to_string()))?;
        if pairs.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(RestoreError("register snapshot keys are not sorted and unique".into()));
        }
        self.values = pairs.into_iter().collect();
        self.applied = applied;
        Ok(())
    }

    fn validate(&self, command: &[u8]) -> Result<(), String> {
        let command = RegisterCommand::decode(command)?;
        let key = match &command {
            RegisterCommand::Write { key, .. } | RegisterCommand::Cas { key, .. } => key,
        };
        if key.len() > KEY_BYTES_MAX {
            return Err(format!("key of {} bytes exceeds the {KEY_BYTES_MAX} byte limit", key.len()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cmd(c: RegisterCommand) -> Payload {
        Payload::Command(c.encode())
    }

    #[test]
    fn write_cas_read() {
        let mut r = Register::new();
        let w = RegisterCommand::Write { key: "a".into(), value: 1 };
        assert_eq!(RegisterResult::decode(&r.apply(1, &cmd(w))), Ok(RegisterResult::Ok));
        let bad = RegisterCommand::Cas { key: "a".into(), expected: 2, new: 3 };
        assert_eq!(RegisterResult::decode(&r.apply(2, &cmd(bad))), Ok(RegisterResult::CasFailed { current: Some(1) }));
        let good = RegisterCommand::Cas { key: "a".into(), expected: 1, new: 3 };
        assert_eq!(RegisterResult::decode(&r.apply(3, &cmd(good))), Ok(RegisterResult::Ok));
        let q = RegisterQuery { key: "a".into() }.encode();
        assert_eq!(RegisterResult::decode(&r.query(&q)), Ok(RegisterResult::Value(Some(3))));
        let q = RegisterQuery { key: "b".into() }.encode();
        assert_eq!(RegisterResult::decode(&r.query(&q)), Ok(RegisterResult::Value(None)));
    }

    #[test]
    fn snapshot_round_trip() {
        let mut r = Register::new();
        r.apply(1, &cmd(RegisterCommand::Write { key: "x".into(), value: -4 }));
        r.apply(2, &Payload::Noop);
        let mut s = Register::new();
        s.restore(&r.snapshot()).expect("restores");
        assert_eq!(s, r);
        assert!(s.restore(&[1, 2, 3]).is_err());
    }

    proptest! {
        #[test]
        fn hostile_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let mut r = Register::new();
            let _ = r.validate(&bytes);
            let _ = r.query(&bytes);
            let _ = r.restore(&bytes);
            let _ = r.apply(1, &Payload::Command(bytes.clone()));
        }

        #[test]
        fn matches_btreemap_oracle(ops in proptest::collection::vec((0u8..4, 0u8..3, -3i64..3, -3i64..3), 0..64)) {
            let mut r = Register::new();
            let mut oracle: BTreeMap<String, i64> = BTreeMap::new();
            for (i, (op, key, a, b)) in ops.into_iter().enumerate() {
                let key = format!("k{key}");
                let index = i as u64 + 1;
                match op {
                    0 | 1 => {
                        r.apply(index, &cmd(RegisterCommand::Write { key: key.clone(), value: a }));
                        oracle.insert(key, a);
                    }
                    2 => {
                        let out = RegisterResult::decode(&r.apply(index, &cmd(RegisterCommand::Cas { key: key.clone(), expected: a, new: b }))).expect("decodes");
                        if oracle.get(&key) == Some(&a) {
                            prop_assert_eq!(out, RegisterResult::Ok);
                            oracle.insert(key, b);
                        } else {
                            prop_assert_eq!(out, RegisterResult::CasFailed { current: oracle.get(&key).copied() });
                        }
                    }
                    _ => {
                        let q = RegisterQuery { key: key.clone() }.encode();
                        prop_assert_eq!(RegisterResult::decode(&r.query(&q)).expect("decodes"), RegisterResult::Value(oracle.get(&key).copied()));
                    }
                }
            }
        }
    }
}
