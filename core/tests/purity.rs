//! core must stay pure: no clock, I/O, threads, async, entropy or hash-order
//! iteration. clippy.toml refuses the APIs; this test refuses the words and the
//! dependencies, so a leak fails `cargo test` as well as review.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "std::time",
    "std::fs",
    "std::net",
    "std::thread",
    "std::process",
    "std::env",
    "Instant::now",
    "SystemTime",
    "thread_rng",
    "rand::rng(",
    "OsRng",
    "from_os_rng",
    "HashMap",
    "HashSet",
    "async fn",
    ".await",
    "tokio",
    "glommio",
    "madsim",
    "Mutex",
    "RwLock",
    "unsafe ",
];

const ALLOWED_DEPENDENCIES: &[&str] = &["rkyv", "crc32c", "rand", "rand_chacha", "siphasher"];

/// Forbidden words allowed in one file, with why.
const EXCEPTIONS: &[(&str, &str, &str)] = &[(
    "kv/key_index.rs",
    "HashMap",
    "the key index's point lookups: behind a wrapper with no iteration, keyed by a hash key passed in",
)];

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("core/src is readable") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn core_sources_use_no_clock_io_threads_async_or_entropy() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() >= 10, "found only {} source files under {}", files.len(), src.display());
    let mut leaks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("source is readable");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                let excepted = EXCEPTIONS.iter().any(|(f, w, _)| file.ends_with(f) && w == word);
                if code.contains(word) && !excepted {
                    leaks.push(format!("{}:{}: `{word}` in: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "core must stay pure:\n{}", leaks.join("\n"));
}

#[test]
fn core_depends_only_on_pure_crates() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .expect("Cargo.toml is readable");
    let mut section = String::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section == "[dependencies]" && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap_or("").trim();
            assert!(ALLOWED_DEPENDENCIES.contains(&name), "core may not depend on `{name}`: it must stay pure");
        }
    }
}

#[test]
fn the_scan_would_catch_a_leak() {
    // The scanner itself must be able to fail.
    let code = "let t = std::time::Instant::now();";
    assert!(FORBIDDEN.iter().any(|w| code.contains(w)));
}
