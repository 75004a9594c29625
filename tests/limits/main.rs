//! The gateway against hostile routing state and oversized input: documents built to be
//! expensive to parse, leftovers of interrupted writes, request heads larger than any
//! buffer. Each test states the bound it holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod heads;
mod leftovers;
mod parse;
