//! Replays stored fuzz inputs through the fuzz harnesses, so that a plain
//! `cargo test` exercises the harness logic and guards against the bugs
//! the fuzzers found, without cargo-fuzz or a nightly compiler.
//!
//! The harnesses live in `core/fuzz/src/` and are compiled here as a
//! module; the inputs are the files of `core/fuzz/regressions/<target>/`:
//! minimised crashes plus small corpus entries that reach the interesting
//! paths (see `core/fuzz/README.md`).

use std::fs;
use std::path::PathBuf;

#[path = "../fuzz/src/lib.rs"]
mod harness;

/// Runs every stored input of `target` through `run`, naming the input
/// that fails.
fn replay(target: &str, run: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no inputs in {}", dir.display());
    for path in paths {
        let data = fs::read(&path).expect("readable input");
        let result = std::panic::catch_unwind(|| run(&data));
        assert!(result.is_ok(), "{} failed", path.display());
    }
}

#[test]
fn request() {
    replay("request", harness::request::run);
}

#[test]
fn response() {
    replay("response", harness::response::run);
}

#[test]
fn frames() {
    replay("frames", harness::frames::run);
}

#[test]
fn connection() {
    replay("connection", harness::connection::run);
}

#[test]
fn extensions() {
    replay("extensions", harness::extensions::run);
}

#[test]
fn http() {
    replay("http", harness::http::run);
}

#[cfg(feature = "cluster")]
#[test]
fn envelope() {
    replay("envelope", harness::envelope::run);
}

#[cfg(feature = "runtime")]
#[test]
fn proxy() {
    replay("proxy", harness::proxy::run);
}

/// Freshly built seeds (valid requests, answers, frames and compressed
/// traffic for every draft and extension) pass their harnesses: keeps the
/// seed layouts in step with what the harnesses read.
#[test]
fn seeds() {
    for seed in harness::seeds::all() {
        let run = match seed.target {
            "request" => harness::request::run,
            "response" => harness::response::run,
            "frames" => harness::frames::run,
            "connection" => harness::connection::run,
            "extensions" => harness::extensions::run,
            "http" => harness::http::run,
            #[cfg(feature = "cluster")]
            "envelope" => harness::envelope::run,
            #[cfg(feature = "runtime")]
            "proxy" => harness::proxy::run,
            other => panic!("no harness for {other}"),
        };
        let result = std::panic::catch_unwind(|| run(&seed.data));
        assert!(result.is_ok(), "{}/{} failed", seed.target, seed.name);
    }
}

/// Writes the seeds to `core/fuzz/regressions/<target>/seed-*`.
#[test]
#[ignore = "writes files; run by hand to refresh the seeds"]
fn write_seeds() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    for seed in harness::seeds::all() {
        let dir = root.join(seed.target);
        fs::create_dir_all(&dir).expect("regressions directory");
        fs::write(dir.join(&seed.name), &seed.data).expect("seed written");
    }
}
