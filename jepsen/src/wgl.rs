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

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::time::Instant;

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
    /// When to give up.
    pub(crate) deadline: Option<Instant>,
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
    let mut search = Search::new(model, ops, events, limits);
    loop {
        if let Some(outcome) = search.run(u64::MAX) {
            return outcome;
        }
    }
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

    fn write_u128(&mut self, value: u128) {
        self.0 = value as u64;
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

/// The (linearized set, state) pairs seen, each kept as a 128-bit
/// fingerprint: two independent Zobrist hashes of the bitset, each mixed with
/// a hash of the state. An entry costs about 20 bytes whatever the history's
/// length, where Porcupine keeps a copy of the bitset (length / 8 bytes).
///
/// Two different pairs share a fingerprint with probability about
/// `states² / 2^129`: below 10^-20 for a billion states. Such a collision could
/// only prune a branch (never invent a linearization), and every `Invalid`
/// verdict that [`check`](crate::check) reports on a long history is
/// confirmed by an exact search of a short window.
#[derive(Default)]
struct Seen {
    fingerprints: HashSet<u128, BuildHasherDefault<IdentityHasher>>,
}

impl Seen {
    fn len(&self) -> u64 {
        self.fingerprints.len() as u64
    }

    /// Adds the fingerprint unless present; returns whether it was added.
    fn insert(&mut self, fingerprint: u128) -> bool {
        self.fingerprints.insert(fingerprint)
    }
}

/// One linearized operation on the search stack.
struct Frame<S> {
    id: u32,
    /// The state before it.
    before: S,
    /// `after_open` before it.
    after_open: bool,
}

/// One level of the search: the operations that may be linearized after the
/// current prefix, in the order they are tried.
#[derive(Clone, Copy)]
struct Level {
    /// Where its candidates start in `Search::order`.
    start: usize,
    /// Candidates tried so far.
    tried: usize,
    /// The operation whose return entry is the first in the list: it must
    /// be linearized before anything invoked after that return.
    blocked: u32,
    /// That return's node.
    return_node: u32,
}

/// A resumable WGL search over one history.
pub(crate) struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [M::Op],
    list: List,
    limits: Limits,
    effort: Effort,
    /// The linearized operations as a bitset.
    linearized: Vec<u64>,
    /// Two Zobrist hashes of `linearized`: the XOR of `zobrist[id]` over its
    /// members, for each half of the fingerprint.
    linearized_hash: (u64, u64),
    zobrist: Vec<(u64, u64)>,
    seen: Seen,
    /// The linearized operations, in order.
    stack: Vec<Frame<M::State>>,
    /// One more level than `stack` has frames once the current level is
    /// prepared; as many while it is not.
    levels: Vec<Level>,
    /// The candidates of every level, back to back.
    order: Vec<u32>,
    state: M::State,
    /// Whether the last operation linearized has no return entry.
    after_open: bool,
    /// Operations with a return entry that are not yet linearized.
    returned_pending: usize,
    deepest: Option<Box<Stuck<M::State>>>,
    /// How many leading entries of `deepest.prefix` still equal the stack's.
    deepest_shared: usize,
    /// The furthest return node any dead end was reached at.
    furthest_return_node: u32,
    /// The search's verdict, once it has one.
    done: Option<Outcome<M::State>>,
    /// Per state that only one operation (or the initial state) produces:
    /// how many operations with a return that require that state are not
    /// yet linearized. Once the state is left, it never comes back, so it
    /// may only be left when this count is zero.
    observers_pending: HashMap<M::State, u32>,
    /// Whether forced moves, the just-in-time order and stranding are used;
    /// without them the search is Porcupine's, whose dead ends explain a
    /// violation more plainly.
    pruned: bool,
}

/// How many steps pass between two looks at the clock.
const CLOCK_STEPS: u64 = 1 << 12;

impl<'a, M: Model> Search<'a, M> {
    /// Prepares a search; see [`check`] for what `events` must hold.
    pub(crate) fn new(model: &'a M, ops: &'a [M::Op], events: &[Event], limits: Limits) -> Search<'a, M> {
        let list = List::new(ops.len(), events);
        let words_per_set = ops.len().div_ceil(64);
        let returned_pending = list.return_node.iter().filter(|&&node| node != NIL).count();
        Search {
            model,
            ops,
            list,
            limits,
            effort: Effort::default(),
            linearized: vec![0; words_per_set],
            linearized_hash: (0, 0),
            zobrist: (0..ops.len() as u64).map(|id| (mix(id), mix(id ^ 0x5851_f42d_4c95_7f2d))).collect(),
            seen: Seen::default(),
            stack: Vec::new(),
            levels: Vec::new(),
            order: Vec::new(),
            state: model.init(),
            after_open: false,
            returned_pending,
            deepest: None,
            deepest_shared: 0,
            furthest_return_node: HEAD,
            done: None,
            observers_pending: HashMap::new(),
            pruned: true,
        }
        .with_observers(events)
    }

    /// The same search without forced moves, the just-in-time order and
    /// stranding: slower, but its deepest dead end is the operation a person
    /// would point at. Used to explain small violations.
    pub(crate) fn plain(mut self) -> Search<'a, M> {
        self.pruned = false;
        self
    }

    fn with_observers(mut self, events: &[Event]) -> Search<'a, M> {
        let mut producers: HashMap<M::State, u32> = HashMap::new();
        for state in self.model.initial_states() {
            *producers.entry(state).or_insert(0) += 1;
        }
        for op in self.ops {
            if let Some(state) = self.model.writes(op) {
                *producers.entry(state).or_insert(0) += 1;
            }
        }
        for event in events {
            let Event::Return(id) = *event else { continue };
            let Some(state) = self.model.observes(&self.ops[id as usize]) else { continue };
            if producers.get(&state) == Some(&1) {
                *self.observers_pending.entry(state).or_insert(0) += 1;
            }
        }
        self
    }

    /// Whether linearizing `id` next would leave a state some operation
    /// with a return still needs, never to come back.
    fn strands_observers(&self, id: u32) -> bool {
        let op = &self.ops[id as usize];
        if self.model.writes(op).is_none_or(|state| state == self.state) {
            return false;
        }
        let Some(&pending) = self.observers_pending.get(&self.state) else { return false };
        let own = self.list.return_node[id as usize] != NIL && self.model.observes(op).as_ref() == Some(&self.state);
        pending > u32::from(own)
    }

    /// Counts `id` in or out of `observers_pending`.
    fn count_observer(&mut self, id: u32, linearized: bool) {
        if self.list.return_node[id as usize] == NIL {
            return;
        }
        let Some(state) = self.model.observes(&self.ops[id as usize]) else { return };
        if let Some(pending) = self.observers_pending.get_mut(&state) {
            if linearized {
                *pending -= 1;
            } else {
                *pending += 1;
            }
        }
    }

    /// The work done so far.
    pub(crate) fn effort(&self) -> Effort {
        self.effort
    }

    /// The index in `events` of the furthest return a dead end was reached
    /// at, if any: in a history that is not linearizable, no linearization
    /// gets past the first such return that cannot be met.
    pub(crate) fn furthest_return(&self) -> Option<usize> {
        (self.furthest_return_node != HEAD).then(|| self.furthest_return_node as usize - 1)
    }

    fn flip(&mut self, id: u32) {
        self.linearized[id as usize / 64] ^= 1 << (id % 64);
        let (first, second) = self.zobrist[id as usize];
        self.linearized_hash.0 ^= first;
        self.linearized_hash.1 ^= second;
    }

    fn fingerprint(&self, state: &M::State, open: bool) -> u128 {
        let salt = if open { AFTER_OPEN_SALT } else { 0 };
        let state_hash = state_hash(state) ^ salt;
        let first = mix(self.linearized_hash.0 ^ state_hash);
        let second = mix(self.linearized_hash.1 ^ state_hash.rotate_left(29) ^ 0x2545_f491_4f6c_dd1d);
        (u128::from(first) << 64) | u128::from(second)
    }

    /// Runs until a verdict, the limits, or `steps` more steps; `None` in the
    /// last case, and the search can be resumed.
    pub(crate) fn run(&mut self, steps: u64) -> Option<Outcome<M::State>> {
        if let Some(done) = &self.done {
            return Some(done.clone());
        }
        let slice_end = self.effort.steps.saturating_add(steps);
        let outcome = self.walk(slice_end)?;
        self.done = Some(outcome.clone());
        Some(outcome)
    }

    fn out_of_time(&self) -> bool {
        self.limits.deadline.is_some_and(|deadline| Instant::now() >= deadline)
    }

    fn walk(&mut self, slice_end: u64) -> Option<Outcome<M::State>> {
        let mut clock_at = self.effort.steps;
        loop {
            if self.returned_pending == 0 {
                return Some(Outcome::Linearizable(self.effort));
            }
            if self.effort.steps >= self.limits.steps_max || self.seen.len() >= self.limits.states_max.min(SEEN_MAX) {
                return Some(Outcome::Exhausted(self.effort));
            }
            if self.effort.steps >= slice_end {
                return None;
            }
            if self.effort.steps >= clock_at + CLOCK_STEPS {
                clock_at = self.effort.steps;
                if self.out_of_time() {
                    return Some(Outcome::Exhausted(self.effort));
                }
            }
            if self.levels.len() == self.stack.len() {
                self.prepare_level();
                continue;
            }
            let level = self.levels.last_mut().expect("a prepared level");
            let position = level.start + level.tried;
            if position == self.order.len() {
                let (blocked, return_node) = (level.blocked, level.return_node);
                self.note_dead_end(blocked, return_node);
                if let Some(outcome) = self.backtrack() {
                    return Some(outcome);
                }
                continue;
            }
            level.tried += 1;
            let id = self.order[position];
            self.effort.steps += 1;
            let next_state = self.model.step(&self.state, &self.ops[id as usize]);
            if let Some(next_state) = next_state {
                self.linearize(id, next_state);
            }
        }
    }

    /// Orders the candidates after the current prefix: the operations whose
    /// calls precede the first return entry of the list.
    ///
    /// A pending read-only operation that can happen now is the only
    /// candidate (a forced move): some linearization extends the prefix only
    /// if one extends it with that operation next, since moving it forward
    /// changes no state and no pending operation returned before it was
    /// invoked. Otherwise the operation whose return comes first goes first
    /// (Lowe's just-in-time linearization: nothing is linearized earlier
    /// than it has to be), then those after which it could happen, then the
    /// rest in call order.
    fn prepare_level(&mut self) {
        let start = self.order.len();
        let mut node = self.list.next[HEAD as usize];
        let mut forced = None;
        while let Event::Call(id) = self.list.event[node as usize] {
            let op = &self.ops[id as usize];
            // Only an operation with a return may be forced: one without
            // may also be left out, and right before a blind write it must
            // be (see `overwrites`), which a forced move would not allow.
            let returns = self.list.return_node[id as usize] != NIL;
            if self.pruned && forced.is_none() && returns && self.model.read_only(&self.state, op) {
                self.effort.steps += 1;
                if self.model.step(&self.state, op).is_some() {
                    forced = Some(id);
                }
            }
            self.order.push(id);
            node = self.list.next[node as usize];
        }
        let Event::Return(blocked) = self.list.event[node as usize] else { unreachable!("the loop stops at a return") };
        assert_ne!(blocked, NIL, "walked off the list with returns pending");
        self.levels.push(Level { start, tried: 0, blocked, return_node: node });
        if let Some(id) = forced {
            self.order.truncate(start);
            self.order.push(id);
            return;
        }
        if !self.pruned {
            return;
        }
        // Drop candidates that cannot happen now, and sort the rest.
        let mut enabling = Vec::new();
        let mut others = Vec::new();
        let blocked_op = &self.ops[blocked as usize];
        let mut blocked_first = false;
        for index in start..self.order.len() {
            let id = self.order[index];
            let op = &self.ops[id as usize];
            if self.after_open && self.model.overwrites(op) {
                // An operation without a return just before a blind write
                // has no visible effect; see the module documentation.
                continue;
            }
            self.effort.steps += 1;
            let Some(next_state) = self.model.step(&self.state, op) else { continue };
            if self.strands_observers(id) {
                continue;
            }
            if id == blocked {
                blocked_first = true;
                continue;
            }
            self.effort.steps += 1;
            if self.model.step(&next_state, blocked_op).is_some() {
                enabling.push(id);
            } else {
                others.push(id);
            }
        }
        self.order.truncate(start);
        if blocked_first {
            self.order.push(blocked);
        }
        self.order.extend(enabling);
        self.order.extend(others);
    }

    /// Linearizes `id` next unless the resulting pair was seen; returns
    /// whether it did.
    fn linearize(&mut self, id: u32, next_state: M::State) -> bool {
        let open = self.list.return_node[id as usize] == NIL;
        self.flip(id);
        let fingerprint = self.fingerprint(&next_state, open);
        if !self.seen.insert(fingerprint) {
            self.flip(id);
            return false;
        }
        self.effort.states += 1;
        let before = std::mem::replace(&mut self.state, next_state);
        let after_open = std::mem::replace(&mut self.after_open, open);
        self.stack.push(Frame { id, before, after_open });
        self.count_observer(id, true);
        self.list.lift(id);
        if !open {
            self.returned_pending -= 1;
        }
        true
    }

    /// Drops the exhausted current level and undoes the linearization that
    /// led to it. Returns the verdict if there is nothing left to undo.
    fn backtrack(&mut self) -> Option<Outcome<M::State>> {
        let level = self.levels.pop().expect("a prepared level");
        self.order.truncate(level.start);
        let Some(frame) = self.stack.pop() else {
            let stuck = self.deepest.take().expect("a dead end was noted before the stack emptied");
            return Some(Outcome::NotLinearizable(self.effort, stuck));
        };
        self.deepest_shared = self.deepest_shared.min(self.stack.len());
        self.state = frame.before;
        self.after_open = frame.after_open;
        self.flip(frame.id);
        self.count_observer(frame.id, false);
        self.list.unlift(frame.id);
        if self.list.return_node[frame.id as usize] != NIL {
            self.returned_pending += 1;
        }
        None
    }

    /// Remembers this dead end if it is deeper than any before.
    fn note_dead_end(&mut self, blocked: u32, return_node: u32) {
        self.furthest_return_node = self.furthest_return_node.max(return_node);
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
        // Only the part of the stack that changed since the last dead end is
        // copied, so recording costs no more than the pushes did.
        let mut prefix = self.deepest.take().map(|deepest| deepest.prefix).unwrap_or_default();
        prefix.truncate(self.deepest_shared);
        prefix.extend(self.stack[prefix.len()..].iter().map(|frame| frame.id));
        self.deepest_shared = prefix.len();
        self.deepest = Some(Box::new(Stuck { prefix, state: self.state.clone(), blocked, candidates }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Register, RegisterOp};

    const LIMITS: Limits = Limits { states_max: 1_000, steps_max: 10_000, deadline: None };

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
        // Writing 1 would strand the read of nil, which can never be met
        // once the register leaves nil: the search is stuck at once.
        assert_eq!(*stuck, Stuck { prefix: vec![], state: None, blocked: 0, candidates: vec![0] });
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
        // Write 1 never returns; write 2 and a read of 2 follow. Write 2
        // returns first, so it is tried first; the read of 2 is then forced:
        // the search reaches [w2] and [w2 r] and never places w1.
        let ops = [RegisterOp::Write(1), RegisterOp::Write(2), RegisterOp::Read(Some(2))];
        let events = [Call(0), Call(1), Return(1), Call(2), Return(2)];
        let Outcome::Linearizable(effort) = check_register(&ops, &events) else {
            panic!("linearizable without write 1");
        };
        assert_eq!(effort, Effort { states: 2, steps: 6 });
        // An open write that is observed is still placed.
        let ops = [RegisterOp::Write(1), RegisterOp::Write(2), RegisterOp::Read(Some(1))];
        assert!(matches!(check_register(&ops, &events), Outcome::Linearizable(_)));
    }

    #[test]
    fn limits_yield_exhausted() {
        use Event::{Call, Return};
        let ops = [RegisterOp::Write(1), RegisterOp::Write(2), RegisterOp::Read(Some(1))];
        let events = [Call(0), Call(1), Return(0), Return(1), Call(2), Return(2)];
        let tight = Limits { states_max: 1, steps_max: 100, deadline: None };
        assert_eq!(check(&Register, &ops, &events, tight), Outcome::Exhausted(Effort { states: 1, steps: 4 }));
        let tight = Limits { states_max: 100, steps_max: 1, deadline: None };
        assert_eq!(check(&Register, &ops, &events, tight), Outcome::Exhausted(Effort { states: 0, steps: 3 }));
    }

    #[test]
    #[should_panic(expected = "operation 0 returns first")]
    fn malformed_events_are_programmer_errors() {
        let _ = check_register(&[RegisterOp::Write(1)], &[Event::Return(0), Event::Call(0)]);
    }
}
