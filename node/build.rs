//! Records the git commit the binary is built from, for `lockstep version`.
//!
//! `LOCKSTEP_GIT_COMMIT` in the build environment wins (release builds from a
//! source tarball set it); otherwise `git rev-parse HEAD` is asked, read-only; if
//! neither answers, the binary says the commit is unknown.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=LOCKSTEP_GIT_COMMIT");
    if let Ok(commit) = std::env::var("LOCKSTEP_GIT_COMMIT") {
        if !commit.trim().is_empty() {
            println!("cargo:rustc-env=LOCKSTEP_GIT_COMMIT={}", commit.trim());
        }
        return;
    }
    // Rebuild when HEAD moves (a checkout or a commit on the current branch).
    let git_dir = Path::new("../.git");
    for watched in ["HEAD", "refs", "packed-refs"] {
        let path = git_dir.join(watched);
        if path.exists() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    let output = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output();
    if let Ok(output) = output {
        if output.status.success() {
            let commit = String::from_utf8_lossy(&output.stdout).trim().to_string();
            if !commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
                println!("cargo:rustc-env=LOCKSTEP_GIT_COMMIT={commit}");
            }
        }
    }
}
