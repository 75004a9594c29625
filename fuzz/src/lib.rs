//! The properties graygate's fuzz targets check, one function per target.
//!
//! Each function takes the raw fuzz input, must not panic on any input, and asserts its
//! target's property. The targets in `fuzz_targets/` are one-line calls into this file, and
//! `tests/fuzz_regressions.rs` includes it as a module (`#[path]`), so a saved crash or seed
//! replays under plain `cargo test` without the fuzzer. Only crates that graygate itself
//! depends on are used here, so the include compiles in both places.
//!
//! Inputs are text-like so seeds stay readable (`fuzz/seeds/<target>/`):
//! - `routes_parse`: a routes file.
//! - `trigger_match`, `path_sanitize`: a request path.
//! - `rule_eval`: strategy lines, a blank line, then header lines (see [`rule_eval`]).
//! - `admin_decode`: a management request body (tried as every JSON body and as an ESA form).
//! - `signature_verify`: an HTTP/1-like request: `METHOD path?query`, headers, a blank line, the body.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use graygate::admin::auth::{AccessKey, Credentials, Scheme, Secret, SignedRequest};
use graygate::fuzzing;
use graygate::health::UpstreamPolicy;
use graygate::proxy::path::sanitize;
use graygate::routes::{
    AliasSpec, FunctionSpec, RoutesFile, RuleSpec, StickySpec, TriggerSpec, ValidRoutes, VersionSpec, VersionStrategy,
};
use graygate::routing::{RoutingTable, Unrouted, compile};
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use time::OffsetDateTime;
use time::macros::datetime;

/// Every target, by the name of its `fuzz_targets/` file and `fuzz/seeds/` folder.
pub const TARGETS: [&str; 6] =
    ["routes_parse", "trigger_match", "path_sanitize", "rule_eval", "admin_decode", "signature_verify"];

/// Runs `data` through the target named `target`; false if there is no such target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "routes_parse" => routes_parse(data),
        "trigger_match" => trigger_match(data),
        "path_sanitize" => path_sanitize(data),
        "rule_eval" => rule_eval(data),
        "admin_decode" => admin_decode(data),
        "signature_verify" => signature_verify(data),
        _ => return false,
    }
    true
}

// === routes_parse ===

/// A routes file either fails with at least one located problem, or validates, survives a
/// serde_norway round trip unchanged, compiles, and routes each trigger path to itself.
pub fn routes_parse(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else { return };
    let routes = match ValidRoutes::parse(source, "fuzz.yaml") {
        Ok(routes) => routes,
        Err(error) => {
            assert!(!error.problems.is_empty(), "a rejected file names no problem");
            assert!(!error.to_string().is_empty());
            return;
        }
    };
    let yaml = serde_norway::to_string(routes.spec());
    assert!(yaml.is_ok(), "a valid routes file does not serialise: {yaml:?}");
    let Ok(yaml) = yaml else { return };
    let again = ValidRoutes::parse(&yaml, "roundtrip.yaml");
    assert!(again.is_ok(), "the serialised file does not validate: {again:?}\n--- serialised:\n{yaml}");
    assert_eq!(again.as_ref().ok(), Some(&routes), "the round trip changed the routes\n--- serialised:\n{yaml}");

    let table = compile_or_fail(routes);
    for function in &table.source().spec().functions {
        for trigger in &function.triggers {
            let path = trigger.effective_path(&function.name);
            let found = table.find_trigger(&path);
            let found_path = found.map(|(t, _)| &*t.path);
            assert_eq!(found_path, Some(path.as_str()), "trigger path {path:?} does not route to itself");
            // A trigger path routes to itself with nothing left over (the root trigger too,
            // whatever the depth of the other triggers).
            let rest = found.map_or("", |(_, rest)| rest);
            assert!(rest.is_empty(), "{path:?} leaves the remainder {rest:?}");
        }
    }
}

/// Validation promises that a valid file compiles (`CompileError` means it missed a case).
fn compile_or_fail(routes: ValidRoutes) -> RoutingTable {
    let table = compile(Arc::new(routes), 1, None, &UpstreamPolicy::default());
    assert!(table.is_ok(), "a validated routes file does not compile: {:?}", table.as_ref().err());
    table.unwrap_or_else(|e| unreachable!("{e}"))
}

// === trigger_match ===

const TABLE: &str = r#"
project_id: fuzz
functions:
  - name: hello
    upstream: http://127.0.0.1:1
    versions:
      - { version: v1, upstream: "http://127.0.0.1:2/base" }
    aliases:
      - { name: prod, version: v1 }
    triggers:
      - { target: prod }
      - { name: api, target: v1, path: /api }
      - { name: api-v1, target: latest, path: /api/v1, req_method: GET }
      - { name: users, target: v1, path: /api/v1/users }
      - { name: deep, target: prod, path: /a/b/c/d }
      - { name: odd, target: latest, path: "/x:y@z/~p.q" }
"#;

const ROOTED: &str = r#"
project_id: fuzz
functions:
  - name: hello
    upstream: http://127.0.0.1:1
    triggers:
      - { name: root, target: latest, path: / }
      - { name: api, target: latest, path: /api }
"#;

fn fixed_table(yaml: &str) -> RoutingTable {
    let routes = ValidRoutes::parse(yaml, "fixture.yaml").unwrap_or_else(|e| unreachable!("{e}"));
    compile_or_fail(routes)
}

fn tables() -> &'static [(RoutingTable, Vec<String>); 2] {
    static TABLES: OnceLock<[(RoutingTable, Vec<String>); 2]> = OnceLock::new();
    TABLES.get_or_init(|| {
        [TABLE, ROOTED].map(|yaml| {
            let table = fixed_table(yaml);
            let paths = table
                .source()
                .spec()
                .functions
                .iter()
                .flat_map(|f| f.triggers.iter().map(|t| t.effective_path(&f.name)))
                .collect();
            (table, paths)
        })
    })
}

/// The trigger found is the longest `/`-bounded prefix of the path (checked against every
/// trigger path), the remainder is what follows it (empty or starting with `/`), and
/// `resolve` agrees with `find_trigger`. Checked on the raw path and on the sanitised one.
pub fn trigger_match(data: &[u8]) {
    let raw = String::from_utf8_lossy(data);
    let clean = sanitize(&raw).ok();
    for (table, paths) in tables() {
        check_match(table, paths, &raw);
        if let Some(clean) = &clean {
            check_match(table, paths, clean);
        }
    }
}

fn check_match(table: &RoutingTable, paths: &[String], path: &str) {
    let expected = paths
        .iter()
        .filter(|p| {
            path.starts_with('/')
                && (*p == "/"
                    || path == p.as_str()
                    || path.strip_prefix(p.as_str()).is_some_and(|r| r.starts_with('/')))
        })
        .max_by_key(|p| p.len())
        .map(String::as_str);
    let found = table.find_trigger(path);
    let found_path = found.map(|(trigger, _)| &*trigger.path);
    assert_eq!(found_path, expected, "wrong trigger for {path:?}");
    if let Some((trigger, rest)) = found {
        assert!(path.ends_with(rest), "remainder {rest:?} is not a suffix of {path:?}");
        assert!(rest.is_empty() || rest.starts_with('/'), "remainder {rest:?} of {path:?} does not start with '/'");
        let prefix = &path[..path.len() - rest.len()];
        assert!(
            prefix == &*trigger.path || (&*trigger.path == "/" && prefix.is_empty()),
            "{path:?} = {prefix:?} + {rest:?} does not start with the trigger path {:?}",
            trigger.path
        );
    }
    for method in [Method::GET, Method::POST] {
        match (table.resolve(&method, path, &HeaderMap::new()), found) {
            (Ok(resolved), Some((trigger, rest))) => {
                assert_eq!(&*resolved.trigger.path, &*trigger.path);
                assert_eq!(resolved.remainder, rest);
                // A path a client can send always makes a valid upstream URI.
                if !path.contains(['?', '#']) && path.parse::<http::uri::PathAndQuery>().is_ok() {
                    let uri = resolved.version.upstream.uri(resolved.remainder, None);
                    assert!(uri.is_ok(), "no upstream URI for {path:?}: {uri:?}");
                }
            }
            (Err(Unrouted::NoTrigger), None) | (Err(Unrouted::MethodNotAllowed), Some(_)) => {}
            (result, found) => {
                let result = result.map(|r| r.trigger.path.to_string());
                let found = found.map(|(t, rest)| (t.path.to_string(), rest));
                unreachable!("resolve {method} {path:?} gave {result:?} but find_trigger gave {found:?}");
            }
        }
    }
}

// === path_sanitize ===

/// `sanitize` never panics, and a path it accepts starts with `/`, has no `//`, no `.` or
/// `..` segment (also percent-encoded), no backslash, encoded slash or encoded NUL; it
/// differs from the input only by removed slashes, and sanitising it again changes nothing.
pub fn path_sanitize(data: &[u8]) {
    let path = String::from_utf8_lossy(data);
    let clean = match sanitize(&path) {
        Ok(clean) => clean,
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
    };
    assert!(clean.starts_with('/'), "{path:?} -> {clean:?} does not start with '/'");
    assert!(!clean.contains("//"), "{path:?} -> {clean:?} has '//'");
    for segment in clean.split('/') {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        assert!(decoded != "." && decoded != "..", "{path:?} -> {clean:?} has the dot segment {segment:?}");
    }
    let lower = clean.to_ascii_lowercase();
    for bad in ["\\", "%2f", "%5c", "%00"] {
        assert!(!lower.contains(bad), "{path:?} -> {clean:?} has {bad:?}");
    }
    assert_eq!(clean.replace('/', ""), path.replace('/', ""), "sanitize changed more than slashes");
    assert_eq!(sanitize(&clean).as_deref(), Ok(&*clean), "sanitize is not idempotent on {path:?}");
}

// === rule_eval ===

/// Strategy rules and request headers from the input; the alias `prod` (version `v1`, with
/// versions `v2` and `v3` available) gets them, and if the routes validate, the version
/// resolved for the headers is the first strategy whose rules match, else one of the
/// alias's weighted versions.
///
/// Input lines up to the first blank line (rest: `name: value` header lines):
/// `@v2 or` starts the strategy of version `v2` with a combine type; `%v2 30` weights a
/// version; `~header x-user` or `~cookie uid` makes the alias sticky; any other line is a
/// rule `Header x-user-group in beta,qa` (rule type, param, op, value) for the current
/// strategy (`v2` with `and` if none was started).
pub fn rule_eval(data: &[u8]) {
    let (spec_part, header_part) = split_blank_line(data);
    let mut alias = alias_spec("prod", "v1");
    let mut current = "v2".to_owned();
    for line in lines(spec_part) {
        let line = String::from_utf8_lossy(line);
        if let Some(rest) = line.strip_prefix('@') {
            let (version, combine) = rest.split_once(' ').unwrap_or((rest, "and"));
            current = version.to_owned();
            alias
                .additional_version_strategy
                .insert(current.clone(), VersionStrategy { combine_type: combine.to_owned(), rules: Vec::new() });
        } else if let Some(rest) = line.strip_prefix('%') {
            if let Some((version, weight)) = rest.split_once(' ')
                && let Ok(weight) = weight.trim().parse::<i64>()
            {
                alias.additional_version_weights.insert(version.to_owned(), weight);
            }
        } else if let Some(rest) = line.strip_prefix('~') {
            let (kind, name) = rest.split_once(' ').unwrap_or((rest, ""));
            let name = Some(name.to_owned());
            alias.sticky = Some(match kind {
                "header" => StickySpec { header: name, cookie: None },
                _ => StickySpec { header: None, cookie: name },
            });
        } else {
            let mut fields = line.splitn(4, ' ').map(str::to_owned);
            let mut field = || fields.next().unwrap_or_default();
            let rule = RuleSpec { rule_type: field(), param: field(), op: field(), value: field() };
            alias
                .additional_version_strategy
                .entry(current.clone())
                .or_insert_with(|| VersionStrategy { combine_type: "and".to_owned(), rules: Vec::new() })
                .rules
                .push(rule);
        }
    }
    let headers = parse_headers(header_part);

    let mut function = function_spec(&["v1", "v2", "v3"]);
    function.aliases.push(alias.clone());
    function.triggers.push(trigger_spec("prod", "/r"));
    let Ok(routes) = ValidRoutes::new(routes_file(function)) else { return };
    let table = compile_or_fail(routes);

    let chosen = table.resolve(&Method::GET, "/r/x", &headers);
    assert!(chosen.is_ok(), "the alias trigger does not resolve");
    let Ok(chosen) = chosen else { return };
    assert_eq!(chosen.remainder, "/x");
    let version = &*chosen.version.name;
    let first_match = alias.additional_version_strategy.iter().find(|(_, s)| strategy_matches(s, &headers));
    match first_match {
        Some((expected, _)) => assert_eq!(version, expected, "the rules chose the wrong version"),
        None => assert!(
            version == alias.version || alias.additional_version_weights.get(version).is_some_and(|w| *w > 0),
            "no rule matched, yet {version} was chosen, which has no weight"
        ),
    }
}

/// The documented semantics, written independently of `routing::rules`.
fn strategy_matches(strategy: &VersionStrategy, headers: &HeaderMap) -> bool {
    let rule_matches = |rule: &RuleSpec| {
        let Ok(name) = HeaderName::from_bytes(rule.param.as_bytes()) else { return false };
        headers.get_all(name).iter().any(|value| {
            let value = value.as_bytes();
            if rule.op == "in" {
                rule.value.split(',').any(|option| option.trim().as_bytes() == value)
            } else {
                rule.value.as_bytes() == value
            }
        })
    };
    if strategy.combine_type == "or" {
        strategy.rules.iter().any(rule_matches)
    } else {
        strategy.rules.iter().all(rule_matches)
    }
}

// === admin_decode ===

/// The bytes as every FunctionGraph JSON body (version, code, trigger, alias create and
/// update) and as an ESA form body and query: decoding never panics, an alias the API
/// accepts has existing versions and weights of 1–100 summing to at most 100 (and compiles
/// whenever the routes validate), and accepted `CodeVersions` are 1–2 distinct existing
/// versions whose percentages sum to 100, highest first.
pub fn admin_decode(data: &[u8]) {
    let _ = fuzzing::decode_fg_version(data);
    let _ = fuzzing::decode_fg_code(data);
    let _ = fuzzing::decode_fg_trigger(data);

    let mut function = function_spec(&["v1", "v2", "v3", "1710120201067203242", "1710120201067203243"]);
    let mut existing = alias_spec("prod", "v1");
    existing.additional_version_weights.insert("v2".to_owned(), 10);
    function.aliases.push(existing.clone());
    function.triggers.push(trigger_spec("prod", "/hello-prod"));
    for mut alias in [existing, alias_spec("fresh", "")] {
        if fuzzing::apply_fg_alias(&function, &mut alias, data).is_ok() {
            check_accepted_alias(&function, &alias);
        }
    }

    let query = String::from_utf8_lossy(data);
    for split in [
        fuzzing::decode_esa_code_versions(None, data, &function),
        fuzzing::decode_esa_code_versions(Some(&query), b"", &function),
    ]
    .into_iter()
    .flatten()
    {
        assert!((1..=2).contains(&split.len()), "{split:?}");
        assert_eq!(split.iter().map(|(_, p)| p).sum::<i64>(), 100, "{split:?}");
        assert!(split.iter().all(|(v, p)| (1..=100).contains(p) && function.versions.iter().any(|x| x.version == *v)));
        assert!(split.len() < 2 || (split[0].0 != split[1].0 && split[0].1 >= split[1].1), "{split:?}");
    }
}

fn check_accepted_alias(function: &FunctionSpec, alias: &AliasSpec) {
    let exists = |v: &str| function.versions.iter().any(|x| x.version == v);
    assert!(alias.version == "latest" || exists(&alias.version), "{alias:?}");
    let additional = alias.additional_version_weights.keys().chain(alias.additional_version_strategy.keys());
    for version in additional {
        assert!(exists(version) && *version != alias.version, "{alias:?}");
    }
    assert!(alias.additional_version_weights.values().all(|w| (1..=100).contains(w)), "{alias:?}");
    assert!(alias.additional_version_weights.values().sum::<i64>() <= 100, "{alias:?}");

    let mut function = function.clone();
    function.aliases.retain(|a| a.name != alias.name);
    function.aliases.push(alias.clone());
    if let Ok(routes) = ValidRoutes::new(routes_file(function)) {
        compile_or_fail(routes);
    }
}

// === signature_verify ===

const NOW: OffsetDateTime = datetime!(2024-05-01 02:03:04 UTC);
/// The keys of the SDK known-answer tests (`src/admin/auth/tests.rs`), so seeds signed with
/// them verify and mutations around a valid signature are explored.
const KNOWN: [(&str, &str); 2] = [
    ("HPUAEXAMPLEAK0000001", "exampleSecretKey0123456789abcdefghijklmn"),
    ("LTAI5tEXAMPLEAccessKey01", "ExampleAccessKeySecret0123456789ab"),
];
const KNOWN_TOKEN: &str = "fuzz-token";

fn credentials(secret: impl Fn(&str) -> String, token: &str) -> Credentials {
    let keys = KNOWN.iter().map(|(id, known)| AccessKey { id: (*id).to_owned(), secret: Secret::new(&secret(known)) });
    Credentials::new(vec![Secret::new(token)], keys.collect(), Duration::from_secs(15 * 60))
}

/// Same key ids as [`KNOWN`], fresh random secrets and token for each process.
fn unknowable() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| {
        let random = |_: &str| std::iter::repeat_with(fastrand::alphanumeric).take(40).collect::<String>();
        credentials(random, &random(""))
    })
}

fn known() -> &'static Credentials {
    static CREDENTIALS: OnceLock<Credentials> = OnceLock::new();
    CREDENTIALS.get_or_init(|| credentials(str::to_owned, KNOWN_TOKEN))
}

/// `authenticate` never panics and is deterministic; with secrets the request cannot know
/// (random per process) or with none configured it always refuses; with the known keys,
/// whatever it accepts is refused again once the body, method, path or query is altered
/// (and a token is accepted only when it is exactly the configured one and no signature
/// was presented).
pub fn signature_verify(data: &[u8]) {
    let Some(request) = parse_request(data) else { return };
    let signed = request.signed();

    let result = unknowable().authenticate(&signed, NOW);
    assert!(result.is_err(), "accepted with secrets the request cannot know: {result:?}");
    let none = Credentials::new(Vec::new(), Vec::new(), Duration::from_secs(u64::from(u32::MAX)));
    assert!(none.authenticate(&signed, NOW).is_err(), "accepted with no credentials configured");

    let result = known().authenticate(&signed, NOW);
    assert_eq!(result, known().authenticate(&signed, NOW), "authenticate is not deterministic");
    match result {
        Err(_) => {}
        Ok(Scheme::Token) => {
            // A signature scheme that fails never falls back to the token.
            let authorization = request.headers.get(http::header::AUTHORIZATION).map(HeaderValue::as_bytes);
            let signature = authorization
                .is_some_and(|a| a.starts_with(b"SDK-HMAC-SHA256 ") || a.starts_with(b"ACS3-HMAC-SHA256 "));
            assert!(!signature, "a failed signature fell back to the token");
            assert_eq!(request.headers.get("x-auth-token").map(HeaderValue::as_bytes), Some(KNOWN_TOKEN.as_bytes()));
        }
        Ok(scheme) => {
            let mut body = request.body.to_vec();
            body.push(b'x');
            let other = if request.method == Method::PUT { Method::POST } else { Method::PUT };
            let path = format!("{}x", request.path);
            let query = format!("{}&fuzz=1", request.query.as_deref().unwrap_or(""));
            let tampered = [
                ("body", SignedRequest { body: &body, ..request.signed() }),
                ("method", SignedRequest { method: &other, ..request.signed() }),
                ("path", SignedRequest { raw_path: &path, ..request.signed() }),
                ("query", SignedRequest { raw_query: Some(&query), ..request.signed() }),
            ];
            for (what, tampered) in tampered {
                let result = known().authenticate(&tampered, NOW);
                assert!(result.is_err(), "{scheme:?} signature still accepted with the {what} altered: {result:?}");
            }
        }
    }
}

/// Whether the known keys accept the request (the replay test checks that the signed seeds
/// still verify, so the tampering checks above are reached).
pub fn accepted_with_known_keys(data: &[u8]) -> bool {
    parse_request(data).is_some_and(|request| known().authenticate(&request.signed(), NOW).is_ok())
}

struct Request<'d> {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: &'d [u8],
}

impl Request<'_> {
    fn signed(&self) -> SignedRequest<'_> {
        SignedRequest {
            method: &self.method,
            raw_path: &self.path,
            raw_query: self.query.as_deref(),
            headers: &self.headers,
            body: self.body,
        }
    }
}

/// `METHOD target` (target: `path[?query]`), `name: value` header lines, a blank line, then
/// the body.
fn parse_request(data: &[u8]) -> Option<Request<'_>> {
    let (head, body) = split_blank_line(data);
    let (request_line, headers) = match head.iter().position(|b| *b == b'\n') {
        Some(end) => (&head[..end], &head[end + 1..]),
        None => (head, &[][..]),
    };
    let request_line = request_line.strip_suffix(b"\r").unwrap_or(request_line);
    let space = request_line.iter().position(|b| *b == b' ')?;
    let method = Method::from_bytes(&request_line[..space]).ok()?;
    let target = String::from_utf8_lossy(&request_line[space + 1..]);
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.into_owned(), None),
    };
    Some(Request { method, path, query, headers: parse_headers(headers), body })
}

// === shared ===

/// Splits at the first empty line (`\n\n` or `\r\n\r\n`).
fn split_blank_line(data: &[u8]) -> (&[u8], &[u8]) {
    let mut start = 0;
    for line in data.split_inclusive(|b| *b == b'\n') {
        start += line.len();
        if line == b"\n" || line == b"\r\n" {
            return (&data[..start - line.len()], &data[start..]);
        }
    }
    (data, &[])
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line)).filter(|line| !line.is_empty())
}

/// `name: value` lines; lines that are not a valid header are skipped.
fn parse_headers(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines(data) {
        let Some(colon) = line.iter().position(|b| *b == b':') else { continue };
        let value = &line[colon + 1..];
        let value = value.strip_prefix(b" ").unwrap_or(value);
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    headers
}

fn routes_file(function: FunctionSpec) -> RoutesFile {
    RoutesFile { project_id: "fuzz".to_owned(), region: "local".to_owned(), functions: vec![function] }
}

fn function_spec(versions: &[&str]) -> FunctionSpec {
    FunctionSpec {
        name: "hello".to_owned(),
        package: "default".to_owned(),
        upstream: "http://127.0.0.1:1".to_owned(),
        description: None,
        timeout_ms: None,
        versions: versions
            .iter()
            .enumerate()
            .map(|(i, v)| VersionSpec {
                version: (*v).to_owned(),
                upstream: format!("http://127.0.0.1:{}", i + 2),
                description: None,
                last_modified: None,
            })
            .collect(),
        aliases: Vec::new(),
        triggers: Vec::new(),
    }
}

fn alias_spec(name: &str, version: &str) -> AliasSpec {
    AliasSpec {
        name: name.to_owned(),
        version: version.to_owned(),
        description: None,
        additional_version_weights: Default::default(),
        additional_version_strategy: Default::default(),
        sticky: None,
        last_modified: None,
        deployment_id: None,
    }
}

fn trigger_spec(target: &str, path: &str) -> TriggerSpec {
    TriggerSpec {
        name: None,
        path: Some(path.to_owned()),
        target: target.to_owned(),
        req_method: None,
        trigger_id: None,
        created_time: None,
        trigger_status: Default::default(),
    }
}
