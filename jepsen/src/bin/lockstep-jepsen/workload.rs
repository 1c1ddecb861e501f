//! What clients do: the next operation of the register and registers workloads.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::cli::Workload;
use crate::client::Request;
use crate::rng::Rng;

/// Values remembered per key as cas expectations.
const RECENT_VALUES_MAX: usize = 5;
/// Keys of the registers workload in use at one time.
const ACTIVE_KEYS: u64 = 3;
/// How long a set of keys of the registers workload stays in use.
const KEY_EPOCH: Duration = Duration::from_secs(10);

/// One operation to run: the key in the history (`None`: the single
/// register), the etcd key, and the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    /// The history's `key` field.
    pub key: Option<String>,
    /// The etcd key.
    pub etcd_key: String,
    /// What to do.
    pub request: Request,
}

/// The shared state of a workload: unique write values and recent values.
pub struct Generator {
    workload: Workload,
    next_value: AtomicI64,
    recent: Mutex<HashMap<Option<String>, VecDeque<i64>>>,
}

impl Generator {
    /// A generator for `workload`.
    pub fn new(workload: Workload) -> Generator {
        Generator { workload, next_value: AtomicI64::new(1), recent: Mutex::new(HashMap::new()) }
    }

    /// The etcd key behind a history key.
    pub fn etcd_key(key: Option<&str>) -> String {
        match key {
            None => "lsj/r".to_owned(),
            Some(key) => format!("lsj/{key}"),
        }
    }

    /// The history keys used up to `elapsed` (for final reads).
    pub fn keys_until(&self, elapsed: Duration) -> Vec<Option<String>> {
        match self.workload {
            Workload::Register | Workload::Watch => vec![None],
            Workload::Bank | Workload::Lock => Vec::new(),
            Workload::Registers => {
                let epochs = elapsed.as_secs() / KEY_EPOCH.as_secs() + 1;
                (0..epochs * ACTIVE_KEYS).map(|index| Some(format!("k{index}"))).collect()
            }
        }
    }

    /// The next operation: a third reads, a third writes a fresh value, a
    /// third cas from a recently written value to a fresh one.
    pub fn next(&self, rng: &mut Rng, elapsed: Duration) -> Planned {
        let key = match self.workload {
            Workload::Register | Workload::Bank | Workload::Watch | Workload::Lock => None,
            Workload::Registers => {
                let epoch = elapsed.as_secs() / KEY_EPOCH.as_secs();
                Some(format!("k{}", epoch * ACTIVE_KEYS + rng.below(ACTIVE_KEYS)))
            }
        };
        let request = match rng.below(3) {
            0 => Request::Read,
            choice => {
                let new = self.next_value.fetch_add(1, Ordering::Relaxed);
                let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let values = recent.entry(key.clone()).or_default();
                let expected = (!values.is_empty()).then(|| values[rng.below(values.len() as u64) as usize]);
                values.push_back(new);
                if values.len() > RECENT_VALUES_MAX {
                    values.pop_front();
                }
                match (choice, expected) {
                    (1, _) | (_, None) => Request::Write(new),
                    (_, Some(expected)) => Request::Cas(expected, new),
                }
            }
        };
        Planned { etcd_key: Generator::etcd_key(key.as_deref()), key, request }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn writes_are_unique_and_cas_expects_a_written_value() {
        let generator = Generator::new(Workload::Register);
        let mut rng = Rng::new(5);
        let mut written = HashSet::new();
        let (mut reads, mut cases) = (0, 0);
        for _ in 0..300 {
            let planned = generator.next(&mut rng, Duration::ZERO);
            assert_eq!(planned.key, None);
            assert_eq!(planned.etcd_key, "lsj/r");
            match planned.request {
                Request::Read => reads += 1,
                Request::Write(value) => assert!(written.insert(value)),
                Request::Cas(expected, new) => {
                    cases += 1;
                    assert!(written.contains(&expected), "cas expects {expected}, never written");
                    assert!(written.insert(new));
                }
            }
        }
        assert!(reads > 50 && cases > 50, "{reads} reads, {cases} cas");
    }

    #[test]
    fn registers_rotate_keys() {
        let generator = Generator::new(Workload::Registers);
        let mut rng = Rng::new(1);
        let early: HashSet<_> = (0..50).map(|_| generator.next(&mut rng, Duration::from_secs(1)).key).collect();
        let late: HashSet<_> = (0..50).map(|_| generator.next(&mut rng, Duration::from_secs(25)).key).collect();
        assert_eq!(early.len(), 3);
        assert!(early.is_disjoint(&late));
        assert!(late.contains(&Some("k6".to_owned())));
        assert_eq!(generator.keys_until(Duration::from_secs(25)).len(), 9);
        assert_eq!(Generator::etcd_key(Some("k6")), "lsj/k6");
    }
}
