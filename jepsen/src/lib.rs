//! Linearizability checking for lockstep's register workloads.
//!
//! A history is a sequence of events, each an invocation or a completion of
//! a `read`, `write` or `cas` on a key, issued by a process that runs one
//! operation at a time. It comes from the simulator through
//! [`HistoryRecorder`], or from a file as JSON Lines ([`History::parse_jsonl`])
//! as a Jepsen `history.edn` ([`History::parse_edn`]), or from the op lines
//! of a Jepsen console log ([`History::parse_jepsen_log`]).
//!
//! [`check`] decides whether the history is linearizable, treating each key
//! as an independent register that starts out `nil`:
//!
//! ```text
//!  History ──split by key──▶ per-key events ──────────▶ WGL search, in slices ──▶ KeyResult ──▶ CheckResult
//!            (fail dropped, unobserved info    │        (fingerprint memo,         (Valid | Invalid
//!             dropped, observed info given     │         forced reads, JIT order,   + failing window
//!             a deadline)                      │         stranding; states_max,     | Unknown)
//!                                              │         steps_max, time_max)
//!                                              └──▶ between slices: cheap necessary conditions,
//!                                                   windows at the furthest dead end
//! ```
//!
//! The search is the Wing & Gong / Lowe algorithm as in Porcupine: a linked
//! list of call and return entries, lifted and unlifted as operations are
//! tentatively linearized, and a memo of (linearized set, register value)
//! pairs already explored, kept as 128-bit fingerprints. Reads that can
//! happen are linearized at once; the operation that must return first is
//! tried first; a value written once is never left while an operation that
//! needs it is pending; `info` operations that nothing observes are left
//! out and those observed are given the earliest observer's return as a
//! deadline. Histories that are not linearizable are usually decided by
//! `O(n log n)` necessary conditions (a value never written, read before it
//! was written, or read after a completed overwrite) or by a short window
//! that fails on its own. See the Checker section of `docs/jepsen.md`.
//!
//! An invalid key comes with a [`Counterexample`]: the longest linearizable
//! prefix found, the operation that could not follow it, and the smallest
//! failing window found; [`render_html`] draws it as a timeline. A search
//! that runs out of budget reports [`Verdict::Unknown`] rather than
//! guessing. [`linearizable_history`] and [`corrupt`] generate test
//! histories with known verdicts.
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
mod jepsen_log;
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
