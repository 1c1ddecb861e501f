//! sim-tests: seeded chaos scenarios on lockstep-sim, with Raft invariant checks
//! and a linearizability check of the client history (lockstep-jepsen).
//!
//! Build and run with `RUSTFLAGS="--cfg madsim"`; see `docs/simulation.md`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod admin;
#[cfg(madsim)]
pub mod figure8;
pub mod profile;
#[cfg(madsim)]
pub mod scenario;
