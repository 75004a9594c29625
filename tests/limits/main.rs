//! The gateway against hostile routing state and oversized input: documents built to be
//! expensive to parse, leftovers of interrupted writes, request heads larger than any
//! buffer. Each test states the bound it holds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../support/mod.rs"]
mod support;

mod descriptors;
mod heads;
mod leftovers;
mod parse;

/// One function whose `latest` is served at `/hello`.
const ROUTES: &str = r#"project_id: p1
functions:
  - name: hello
    upstream: "@v1@"
    triggers:
      - { target: latest, path: /hello }
"#;
