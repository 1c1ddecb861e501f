//! The Wing & Gong / Lowe linearizability search ("WGL"), as in Porcupine.
//!
//! The history of one object is a doubly linked list of call and return
//! entries in real-time order. The search repeatedly takes the first entry:
//!
//! - a call: try to linearize its operation now. If the model accepts it and
//!   the pair (set of linearized operations, model state) has not been seen,
//!   push it on the stack, lift its call and return entries out of the list
//!   and start again from the front;
//! - a return: the operation had to be linearized before this point and was
//!   not, so undo the most recent linearization (unlift it) and try the entry
//!   after its call.
//!
//! The history is linearizable once every operation that returned is
//! linearized. Operations without a return entry (`info`: outcome unknown)
//! may be linearized anywhere after their call, or never.
//!
//! One pruning goes beyond Porcupine. An operation without a return that is
//! linearized just before one that [overwrites](Model::overwrites) (a blind
//! write) has no visible effect, so the search never places it there: any
//! linearization that does stays one when that operation is left out, which
//! it may be. This keeps `info` writes from multiplying the states by every
//! place they could silently go. Because it makes what may follow depend on
//! whether the last operation linearized had a return, that flag is part of
//! the memoized state.
//!
//! The seen pairs live in a hash set keyed by a Zobrist hash of the bitset,
//! so no bitset is copied to probe it; bitsets are stored back to back in one
//! arena. The search is bounded by `states_max` and `steps_max`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::model::Model;

/// One entry of the real-time order: an operation's call or its return.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// Operation `id` was invoked.
    Call(u32),
    /// Operation `id` returned.
    Return(u32),
}

/// The limits of one search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The most distinct (linearized set, state) pairs to remember.
    pub(crate) states_max: u64,
    /// The most model steps to take.
    pub(crate) steps_max: u64,
}

/// How much work a search did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Effort {
    /// Distinct (linearized set, state) pairs reached.
    pub(crate) states: u64,
    /// Model steps taken.
    pub(crate) steps: u64,
}

/// The deepest dead end of a failed search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stuck<S> {
    /// Operations in the order they were linearized: the longest linearizable
    /// prefix found.
    pub(crate) prefix: Vec<u32>,
    /// The model state after `prefix`.
    pub(crate) state: S,
    /// The operation whose return was reached before it could be linearized.
    pub(crate) blocked: u32,
    /// Every operation not in `prefix` that was invoked before `blocked`
    /// returned (including `blocked`), in call order, at most
    /// [`CANDIDATES_MAX`]. None of them could be linearized next.
    pub(crate) candidates: Vec<u32>,
}

/// The most candidates a [`Stuck`] lists.
pub(crate) const CANDIDATES_MAX: usize = 32;

/// The result of a search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome<S> {
    /// Some order of the operations satisfies the model and real time.
    Linearizable(Effort),
    /// No order does; the deepest dead end explains why.
    NotLinearizable(Effort, Box<Stuck<S>>),
    /// The search hit a limit before deciding.
    Exhausted(Effort),
}

const NIL: u32 = u32::MAX;
/// The most states [`Seen`] can number with `u32` indices.
const SEEN_MAX: u64 = NIL as u64 - 1;
const HEAD: u32 = 0;
/// Mixed into the hash of states reached by an operation without a return.
const AFTER_OPEN_SALT: u64 = 0x6a09_e667_f3bc_c908;

/// Decides whether `ops`, called and returning in the order of `events`, are
/// linearizable with respect to `model`.
///
/// `events` must hold exactly one `Call` for every id in `0..ops.len()` and
/// at most one `Return` for each, after its `Call`. These are programmer
/// errors and panic.
pub(crate) fn check<M: Model>(model: &M, ops: &[M::Op], events: &[Event], limits: Limits) -> Outcome<M::State> {
    let list = List::new(ops.len(), events);
    Search::new(model, ops, list, limits).run()
}

/// The entries as a doubly linked list over arrays. Node 0 is the head
/// sentinel, node `i + 1` is `events[i]`, the last node is the tail sentinel.
struct List {
    next: Vec<u32>,
    prev: Vec<u32>,
    /// Per node: the event (sentinels hold a dummy `Return(NIL)`).
    event: Vec<Event>,
    /// Per operation: the node of its call.
    call_node: Vec<u32>,
    /// Per operation: the node of its return, or `NIL`.
    return_node: Vec<u32>,
}

impl List {
    fn new(op_count: usize, events: &[Event]) -> List {
        let node_count = events.len() + 2;
        assert!(node_count < NIL as usize, "too many events for one search");
        let tail = (node_count - 1) as u32;
        let mut list = List {
            next: (1..=node_count as u32).collect(),
            prev: (0..node_count as u32).map(|node| node.wrapping_sub(1)).collect(),
            event: Vec::with_capacity(node_count),
            call_node: vec![NIL; op_count],
            return_node: vec![NIL; op_count],
        };
        list.next[tail as usize] = NIL;
        list.prev[HEAD as usize] = NIL;
        list.event.push(Event::Return(NIL));
        for (index, &event) in events.iter().enumerate() {
            let node = index as u32 + 1;
            match event {
                Event::Call(id) => {
                    assert_eq!(list.call_node[id as usize], NIL, "operation {id} called twice");
                    list.call_node[id as usize] = node;
                }
                Event::Return(id) => {
                    assert_ne!(list.call_node[id as usize], NIL, "operation {id} returns first");
                    assert_eq!(list.return_node[id as usize], NIL, "operation {id} returns twice");
                    list.return_node[id as usize] = node;
                }
            }
            list.event.push(event);
        }
        list.event.push(Event::Return(NIL));
        assert!(list.call_node.iter().all(|&node| node != NIL), "an operation is never called");
        list
    }

    fn remove(&mut self, node: u32) {
        let (prev, next) = (self.prev[node as usize], self.next[node as usize]);
        self.next[prev as usize] = next;
        self.prev[next as usize] = prev;
    }

    /// Re-inserts `node`, which must be the most recently removed node still
    /// out of the list.
    fn restore(&mut self, node: u32) {
        let (prev, next) = (self.prev[node as usize], self.next[node as usize]);
        self.next[prev as usize] = node;
        self.prev[next as usize] = node;
    }

    fn lift(&mut self, id: u32) {
        self.remove(self.call_node[id as usize]);
        let return_node = self.return_node[id as usize];
        if return_node != NIL {
            self.remove(return_node);
        }
    }

    fn unlift(&mut self, id: u32) {
        let return_node = self.return_node[id as usize];
        if return_node != NIL {
            self.restore(return_node);
        }
        self.restore(self.call_node[id as usize]);
    }
}

/// A hasher for keys that are already uniformly distributed.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// A fast, deterministic hasher for model states.
#[derive(Default)]
struct StateHasher(u64);

impl Hasher for StateHasher {
    fn finish(&self) -> u64 {
        mix(self.0)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(5) ^ value).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

/// SplitMix64's finalizer: a bijection that spreads every input bit.
fn mix(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn state_hash<S: Hash>(state: &S) -> u64 {
    let mut hasher = StateHasher::default();
    state.hash(&mut hasher);
    hasher.finish()
}

/// The set of (linearized bitset, state) pairs seen.
struct Seen<S> {
    words_per_set: usize,
    /// Bitsets back to back: entry `i` is `sets[i * words_per_set..][..words_per_set]`.
    sets: Vec<u64>,
    states: Vec<S>,
    /// Per entry: the next entry with the same hash, or `NIL`.
    chain: Vec<u32>,
    /// Per hash: the most recent entry with that hash.
    heads: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
}

impl<S: Clone + Eq> Seen<S> {
    fn new(words_per_set: usize) -> Seen<S> {
        Seen { words_per_set, sets: Vec::new(), states: Vec::new(), chain: Vec::new(), heads: HashMap::default() }
    }

    fn len(&self) -> u64 {
        self.states.len() as u64
    }

    /// Adds the pair unless present; returns whether it was added.
    fn insert(&mut self, hash: u64, set: &[u64], state: &S) -> bool {
        let head = self.heads.get(&hash).copied().unwrap_or(NIL);
        let mut entry = head;
        while entry != NIL {
            let start = entry as usize * self.words_per_set;
            if self.states[entry as usize] == *state && self.sets[start..start + self.words_per_set] == *set {
                return false;
            }
            entry = self.chain[entry as usize];
        }
        let new_entry = self.states.len() as u32;
        self.sets.extend_from_slice(set);
        self.states.push(state.clone());
        self.chain.push(head);
        self.heads.insert(hash, new_entry);
        true
    }
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [M::Op],
    list: List,
    limits: Limits,
    effort: Effort,
    /// The linearized operations as a bitset.
    linearized: Vec<u64>,
    /// Zobrist hash of `linearized`: the XOR of `zobrist[id]` over its members.
    linearized_hash: u64,
    zobrist: Vec<u64>,
    /// Pairs of (model state, `after_open`) seen with each bitset.
    seen: Seen<(M::State, bool)>,
    /// Linearized operations in order, each with the state and `after_open`
    /// before it.
    stack: Vec<(u32, M::State, bool)>,
    state: M::State,
    /// Whether the last operation linearized has no return entry.
    after_open: bool,
    /// Operations with a return entry that are not yet linearized.
    returned_pending: usize,
    deepest: Option<Box<Stuck<M::State>>>,
}

impl<'a, M: Model> Search<'a, M> {
    fn new(model: &'a M, ops: &'a [M::Op], list: List, limits: Limits) -> Search<'a, M> {
        let words_per_set = ops.len().div_ceil(64);
        let returned_pending = list.return_node.iter().filter(|&&node| node != NIL).count();
        Search {
            model,
            ops,
            list,
            limits,
            effort: Effort::default(),
            linearized: vec![0; words_per_set],
            linearized_hash: 0,
            zobrist: (0..ops.len() as u64).map(mix).collect(),
            seen: Seen::new(words_per_set),
            stack: Vec::new(),
            state: model.init(),
            after_open: false,
            returned_pending,
            deepest: None,
        }
    }

    fn flip(&mut self, id: u32) {
        self.linearized[id as usize / 64] ^= 1 << (id % 64);
        self.linearized_hash ^= self.zobrist[id as usize];
    }

    fn run(mut self) -> Outcome<M::State> {
        let mut node = self.list.next[HEAD as usize];
        while self.returned_pending > 0 {
            // While an operation with a return is pending, its return entry
            // is in the list, so the walk meets a return before the tail.
            match self.list.event[node as usize] {
                Event::Call(id) => {
                    if self.effort.steps >= self.limits.steps_max {
                        return Outcome::Exhausted(self.effort);
                    }
                    self.effort.steps += 1;
                    let op = &self.ops[id as usize];
                    let hidden = self.after_open && self.model.overwrites(op);
                    let next_state = if hidden { None } else { self.model.step(&self.state, op) };
                    let Some(next_state) = next_state else {
                        node = self.list.next[node as usize];
                        continue;
                    };
                    if self.seen.len() >= self.limits.states_max.min(SEEN_MAX) {
                        return Outcome::Exhausted(self.effort);
                    }
                    let open = self.list.return_node[id as usize] == NIL;
                    self.flip(id);
                    let salt = if open { AFTER_OPEN_SALT } else { 0 };
                    let hash = self.linearized_hash ^ state_hash(&next_state) ^ salt;
                    let next = (next_state, open);
                    if self.seen.insert(hash, &self.linearized, &next) {
                        self.effort.states += 1;
                        let before = std::mem::replace(&mut self.state, next.0);
                        let after_open = std::mem::replace(&mut self.after_open, open);
                        self.stack.push((id, before, after_open));
                        self.list.lift(id);
                        if !open {
                            self.returned_pending -= 1;
                        }
                        node = self.list.next[HEAD as usize];
                    } else {
                        self.flip(id);
                        node = self.list.next[node as usize];
                    }
                }
                Event::Return(blocked) => {
                    assert_ne!(blocked, NIL, "walked off the list with returns pending");
                    self.note_dead_end(blocked, node);
                    let Some((id, before, after_open)) = self.stack.pop() else {
                        let stuck = self.deepest.take();
                        let stuck = stuck.expect("a dead end was just noted");
                        return Outcome::NotLinearizable(self.effort, stuck);
                    };
                    self.state = before;
                    self.after_open = after_open;
                    self.flip(id);
                    self.list.unlift(id);
                    if self.list.return_node[id as usize] != NIL {
                        self.returned_pending += 1;
                    }
                    node = self.list.next[self.list.call_node[id as usize] as usize];
                }
            }
        }
        Outcome::Linearizable(self.effort)
    }

    /// Remembers this dead end if it is deeper than any before.
    fn note_dead_end(&mut self, blocked: u32, return_node: u32) {
        let depth = self.stack.len();
        if self.deepest.as_ref().is_some_and(|deepest| deepest.prefix.len() >= depth) {
            return;
        }
        let mut candidates = Vec::new();
        let mut node = self.list.next[HEAD as usize];
        while node != return_node && candidates.len() < CANDIDATES_MAX {
            if let Event::Call(id) = self.list.event[node as usize] {
                candidates.push(id);
            }
            node = self.list.next[node as usize];
        }
        self.deepest = Some(Box::new(Stuck {
            prefix: self.stack.iter().map(|(id, _, _)| *id).collect(),
            state: self.state.clone(),
            blocked,
            candidates,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Register, RegisterOp};

    const LIMITS: Limits = Limits { states_max: 1_000, steps_max: 10_000 };

    fn check_register(ops: &[RegisterOp], events: &[Event]) -> Outcome<Option<i64>> {
        check(&Register, ops, events, LIMITS)
    }

    #[test]
    fn empty_history_is_linearizable() {
        assert_eq!(check_register(&[], &[]), Outcome::Linearizable(Effort::default()));
    }

    #[test]
    fn concurrent_write_and_read_linearize_in_either_order() {
        use Event::{Call, Return};
        let ops = [RegisterOp::Write(1), RegisterOp::Read(Some(1))];
        let events = [Call(0), Call(1), Return(1), Return(0)];
        assert!(matches!(check_register(&ops, &events), Outcome::Linearizable(_)));
        let ops = [RegisterOp::Write(1), RegisterOp::Read(None)];
        assert!(matches!(check_register(&ops, &events), Outcome::Linearizable(_)));
    }

    #[test]
    fn stale_read_is_stuck_on_the_read() {
        use Event::{Call, Return};
        let ops = [RegisterOp::Write(1), RegisterOp::Read(None)];
        let events = [Call(0), Return(0), Call(1), Return(1)];
        let Outcome::NotLinearizable(_, stuck) = check_register(&ops, &events) else {
            panic!("a read after a completed write saw the old value");
        };
        assert_eq!(*stuck, Stuck { prefix: vec![0], state: Some(1), blocked: 1, candidates: vec![1] });
    }

    #[test]
    fn an_op_without_return_may_never_happen() {
        use Event::{Call, Return};
        let ops = [RegisterOp::Write(1), RegisterOp::Read(None), RegisterOp::Read(Some(1))];
        let events = [Call(0), Call(1), Return(1), Call(2), Return(2)];
        assert!(matches!(check_register(&ops, &events), Outcome::Linearizable(_)));
        let ops = [RegisterOp::Write(1), RegisterOp::Read(Some(1)), RegisterOp::Read(None)];
        assert!(matches!(check_register(&ops, &events), Outcome::NotLinearizable(..)));
    }

    #[test]
    fn open_op_is_not_placed_just_before_a_write() {
        use Event::{Call, Return};
        // Write 1 never returns; write 2 and a read of 2 follow. The search
        // reaches [w1] (where w2 may not follow, so it backtracks), [w2],
        // [w2 w1] (where the read fails) and [w2 r]: never [w1 w2].
        let ops = [RegisterOp::Write(1), RegisterOp::Write(2), RegisterOp::Read(Some(2))];
        let events = [Call(0), Call(1), Return(1), Call(2), Return(2)];
        let Outcome::Linearizable(effort) = check_register(&ops, &events) else {
            panic!("linearizable without write 1");
        };
        assert_eq!(effort, Effort { states: 4, steps: 6 });
        // An open write that is observed is still placed.
        let ops = [RegisterOp::Write(1), RegisterOp::Write(2), RegisterOp::Read(Some(1))];
        assert!(matches!(check_register(&ops, &events), Outcome::Linearizable(_)));
    }

    #[test]
    fn limits_yield_exhausted() {
        use Event::{Call, Return};
        let ops = [RegisterOp::Write(1), RegisterOp::Write(2), RegisterOp::Read(Some(1))];
        let events = [Call(0), Call(1), Return(0), Return(1), Call(2), Return(2)];
        let tight = Limits { states_max: 1, steps_max: 100 };
        assert_eq!(check(&Register, &ops, &events, tight), Outcome::Exhausted(Effort { states: 1, steps: 2 }));
        let tight = Limits { states_max: 100, steps_max: 1 };
        assert_eq!(check(&Register, &ops, &events, tight), Outcome::Exhausted(Effort { states: 1, steps: 1 }));
    }

    #[test]
    #[should_panic(expected = "operation 0 returns first")]
    fn malformed_events_are_programmer_errors() {
        let _ = check_register(&[RegisterOp::Write(1)], &[Event::Return(0), Event::Call(0)]);
    }
}
