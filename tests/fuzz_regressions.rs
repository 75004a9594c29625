//! Replays the fuzz targets' inputs under plain `cargo test`, no fuzzer needed: every file
//! under `fuzz/regressions/<target>/` (inputs that once made a target fail) and
//! `fuzz/seeds/<target>/`, plus a few hand-written cases, go through the same checks the
//! targets run (`fuzz/src/lib.rs`). A failing case prints the file it came from.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_file()).collect();
    files.sort();
    files
}

/// Runs every seed and regression input of `target`, then `cases`; returns how many seeds ran.
fn replay(target: &str, cases: &[&[u8]]) -> usize {
    let seeds = files_in(&fuzz_dir().join("seeds").join(target));
    let regressions = files_in(&fuzz_dir().join("regressions").join(target));
    for file in seeds.iter().chain(&regressions) {
        let data = std::fs::read(file).unwrap_or_else(|e| unreachable!("{}: {e}", file.display()));
        eprintln!("replaying {}", file.display());
        assert!(harness::run(target, &data), "no target {target}");
    }
    for case in cases {
        eprintln!("replaying {:?}", String::from_utf8_lossy(case));
        assert!(harness::run(target, case), "no target {target}");
    }
    seeds.len()
}

#[test]
fn every_seed_and_regression_folder_names_a_target() {
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else { continue };
        for entry in entries.filter_map(Result::ok).filter(|e| e.path().is_dir()) {
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(harness::TARGETS.contains(&name.as_str()), "fuzz/{kind}/{name} is not a fuzz target");
        }
    }
    for target in harness::TARGETS {
        assert!(fuzz_dir().join("fuzz_targets").join(format!("{target}.rs")).is_file(), "{target} has no target file");
    }
}

#[test]
fn routes_parse() {
    let nested = "[".repeat(10_000);
    let cases: &[&[u8]] = &[
        b"",
        b"\xff\xfe",
        b"project_id: p",
        b"project_id: p\nfunctions: [{name: f, upstream: 'http://h', triggers: [{target: latest, path: /}]}]",
        b"project_id: p\nfunctions: [{name: f, upstream: 'http://h', versions: [{version: 'null', upstream: 'http://h'}]}]",
        b"project_id: &a [*a]",
        b"project_id: p\nregion: ~\n",
        nested.as_bytes(),
    ];
    assert!(replay("routes_parse", cases) >= 3);
}

#[test]
fn trigger_match() {
    let cases: &[&[u8]] =
        &[b"", b"/", b"*", b"/api/", b"//", b"/hello-prod/../api", b"/api/v1/users/", "/é/ü".as_bytes(), b"/apiv1"];
    assert!(replay("trigger_match", cases) >= 3);
}

#[test]
fn path_sanitize() {
    let cases: &[&[u8]] = &[b"", b"/", b"/%2e%2E/", b"/./", b"\\", b"//..//", "/ü%2fx".as_bytes(), b"/a/%", b"/.."];
    assert!(replay("path_sanitize", cases) >= 3);
}

#[test]
fn rule_eval() {
    let cases: &[&[u8]] = &[
        b"",
        b"\n\n",
        b"Header x-a = 1\n\nx-a: 1",
        b"@v2 or\nHeader x-a in ,\n",
        b"@v3 or\nheader X-A in a, b\n@v2 and\nHeader x-a = a\n\nx-a: a",
        b"%v2 100\n%v3 1\nHeader x = y\n",
        b"~header x-user\n%v2 60\nHeader x = y\n\nx-user: \xff",
    ];
    assert!(replay("rule_eval", cases) >= 3);
}

#[test]
fn admin_decode() {
    let nested = "[".repeat(10_000);
    let cases: &[&[u8]] = &[
        b"",
        b"{}",
        b"null",
        nested.as_bytes(),
        br#"{"version": "v1", "additional_version_weights": "{\"v2\": 101}"}"#,
        br#"{"version": "v1", "additional_version_weights": {"v2": 9223372036854775807, "v3": 1}}"#,
        br#"{"trigger_type_code": "APIG", "event_data": {"path": 1}}"#,
        b"CodeVersions=[{\"CodeVersion\":\"v1\",\"Percentage\":100}]",
        b"CodeVersions=[{\"CodeVersion\":\"v1\",\"Percentage\":50},{\"CodeVersion\":\"v1\",\"Percentage\":50}]",
    ];
    assert!(replay("admin_decode", cases) >= 3);
}

#[test]
fn signature_verify() {
    let cases: &[&[u8]] = &[
        b"",
        b"GET /",
        b"GET /\nx-auth-token: \n\n",
        b"GET /\nx-auth-token: fuzz-token\nauthorization: Basic x\n\n",
        b"GET /?a\nauthorization: SDK-HMAC-SHA256 Access=HPUAEXAMPLEAK0000001, SignedHeaders=x-sdk-date, Signature=00\nx-sdk-date: 20240501T020304Z\n\n",
        b"POST /\nauthorization: ACS3-HMAC-SHA256 Credential=LTAI5tEXAMPLEAccessKey01,SignedHeaders=x-acs-date,Signature=\nx-acs-date: 2024-05-01T02:03:04Z\n\nbody",
    ];
    assert!(replay("signature_verify", cases) >= 3);
}

#[test]
fn signed_seeds_verify_with_the_known_keys() {
    // Otherwise signature_verify never reaches its tampering checks.
    for name in ["huawei_post", "huawei_query", "esa_post", "token"] {
        let file = fuzz_dir().join("seeds/signature_verify").join(name);
        let data = std::fs::read(&file).unwrap_or_else(|e| unreachable!("{}: {e}", file.display()));
        assert!(harness::accepted_with_known_keys(&data), "{name} is not accepted");
    }
}
