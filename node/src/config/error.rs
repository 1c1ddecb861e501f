//! What can be wrong with a member's configuration, worded for the operator.

use std::fmt;
use std::path::PathBuf;

/// Where a setting (or a problem) came from. Later layers override earlier ones:
/// [`Origin::Default`] < [`Origin::File`] < [`Origin::Env`] < [`Origin::Flag`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// A line of the config file.
    File {
        /// The file, as the caller named it.
        path: PathBuf,
        /// 1-based line.
        line: usize,
    },
    /// A `LOCKSTEP_*` environment variable.
    Env {
        /// The variable's name.
        var: String,
    },
    /// A `--set KEY=VALUE` flag.
    Flag,
}

/// One thing wrong with the configuration.
///
/// Its `Display` is the line `lockstep config check` prints, one of:
///
/// ```text
/// config.yaml:12: raft.election_timeout_ms = 5: must be between 20 and 60000 (...)
/// config.yaml:7: unknown key `raft.heartbeat_ms` (did you mean `raft.heartbeat_interval_ms`?)
/// LOCKSTEP_RAFT_PRE_VOTE=yes: must be true or false
/// --set raft.pre_vote=yes: must be true or false
/// config.yaml: missing required key `member_id` (...)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where the offending setting came from; `None` for a problem of the whole
    /// configuration that no one line holds (a required key missing everywhere).
    pub origin: Option<Origin>,
    /// The config file, if one was read (named by problems without a line).
    pub file: Option<PathBuf>,
    /// The key (dotted path) the problem is about, if any.
    pub key: Option<String>,
    /// The value as written, if the problem is about a value.
    pub value: Option<String>,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = self.key.as_deref().unwrap_or("");
        match (&self.origin, &self.value) {
            (Some(Origin::File { path, line }), Some(value)) => {
                write!(f, "{}:{line}: {key} = {value}: {}", path.display(), self.message)
            }
            (Some(Origin::File { path, line }), None) => write!(f, "{}:{line}: {}", path.display(), self.message),
            (Some(Origin::Env { var }), Some(value)) => write!(f, "{var}={value}: {}", self.message),
            (Some(Origin::Env { var }), None) => write!(f, "{var}: {}", self.message),
            (Some(Origin::Flag), Some(value)) => write!(f, "--set {key}={value}: {}", self.message),
            (Some(Origin::Flag), None) => write!(f, "--set {key}: {}", self.message),
            (Some(Origin::Default), Some(value)) => write!(f, "{key} = {value} (default): {}", self.message),
            (Some(Origin::Default), None) | (None, _) => match &self.file {
                Some(path) => write!(f, "{}: {}", path.display(), self.message),
                None => write!(f, "{}", self.message),
            },
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug)]
pub enum ConfigError {
    /// The config file could not be read (`lockstep config check` exits 2).
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file, the environment or the flags are wrong: every problem found, in
    /// the order of the file, then the environment, then the flags, then the
    /// relations between keys (`lockstep config check` exits 1).
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The problems (empty for [`ConfigError::Read`]).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Read { .. } => &[],
            ConfigError::Invalid(problems) => problems,
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "cannot read {}: {error}", path.display()),
            ConfigError::Invalid(problems) => {
                for (i, problem) in problems.iter().enumerate() {
                    if i > 0 {
                        writeln!(f)?;
                    }
                    write!(f, "{problem}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Read { error, .. } => Some(error),
            ConfigError::Invalid(_) => None,
        }
    }
}
