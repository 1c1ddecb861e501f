//! Linearizability checking for lockstep's register workloads.
//!
//! A history is a sequence of events, each an invocation or a completion of
//! a `read`, `write` or `cas` on a key, issued by a process that runs one
//! operation at a time. It comes from the simulator through
//! [`HistoryRecorder`], or from a file as JSON Lines ([`History::parse_jsonl`])
//! or as a Jepsen `history.edn` ([`History::parse_edn`]).
//!
//! [`check`] decides whether the history is linearizable, treating each key
//! as an independent register that starts out `nil`:
//!
//! ```text
//!  History ──split by key──▶ per-key events ──WGL search──▶ KeyResult ──▶ CheckResult
//!                            (fail dropped,     (bitset + state memo,     (Valid | Invalid
//!                             info open-ended)   states_max, steps_max)    | Unknown)
//! ```
//!
//! The search is the Wing & Gong / Lowe algorithm as in Porcupine: a linked
//! list of call and return entries, lifted and unlifted as operations are
//! tentatively linearized, and a memo of (linearized bitset, register value)
//! pairs already explored. Two prunings keep `info` operations, which may
//! take effect at any later point or never, from multiplying the search:
//! an `info` write or cas whose value nothing observes is left out, and an
//! `info` operation is never placed just before a write that would hide it.
//! An invalid key comes with a [`Counterexample`]:
//! the longest linearizable prefix found and the operation that could not
//! follow it. A search that runs out of budget reports [`Verdict::Unknown`]
//! rather than guessing.
//!
//! The crate is pure: it reads histories from strings or a `BufRead` and does
//! no other I/O.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod check;
mod edn;
mod edn_history;
mod generate;
mod history;
mod html;
mod jsonl;
mod model;
mod necessary;
mod op;
mod parse_error;
mod report;
mod wgl;

pub use check::{check, CheckConfig};
pub use generate::{corrupt, linearizable_history, Corruption, GeneratorConfig};
pub use history::{History, HistoryError, HistoryRecorder, OpRef, HISTORY_OPS_MAX};
pub use html::{render_html, HTML_OPS_MAX};
pub use jsonl::JSONL_LINE_BYTES_MAX;
pub use op::{Op, OpType, RegisterDisplay, Value, F};
pub use parse_error::{ParseError, ParseErrorKind};
pub use report::{CheckResult, Counterexample, KeyOutcome, KeyResult, OpReport, Verdict};
