//! Fuzz harnesses for polysocket.
//!
//! Each module has a `run(&[u8])` that a libFuzzer target in
//! `fuzz_targets/` calls and that `core/tests/fuzz_regressions.rs` replays
//! on stored inputs, so the harness logic is exercised by a plain
//! `cargo test` too. This file is also compiled as a module of that test
//! (`#[path]`), so the harness uses only what polysocket itself depends on,
//! names its siblings through `super::`, and carries no crate attributes.
//!
//! Every harness reads its decisions (draft, role, configuration, how to
//! split reads) from the front of the input with [`input::Input`] and uses
//! the rest as the bytes under test, so mutations of the payload keep the
//! decisions and vice versa. Besides "never panics", each checks the
//! invariants the API documents (see the module docs).

pub mod connection;
// The bus format exists only with the `cluster` feature (the fuzz crate's
// own feature of that name turns on polysocket's).
#[cfg(feature = "cluster")]
pub mod envelope;
pub mod extensions;
pub mod frames;
pub mod http;
pub mod input;
// The proxy parsers belong to the runtime (the fuzz crate's `runtime`
// feature turns on polysocket's).
#[cfg(feature = "runtime")]
pub mod proxy;
pub mod puff;
pub mod request;
pub mod response;
pub mod seeds;
