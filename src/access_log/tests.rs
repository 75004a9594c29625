use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderValue, Request};
use prometheus::IntCounter;

use super::*;
use crate::health::{UpstreamHealth, UpstreamPolicy};

fn entry(path: &str, headers: &[(&str, &str)]) -> Entry {
    let mut request = Request::get(path);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(()).unwrap();
    let started = Instant::now() - Duration::from_millis(3);
    let mut entry =
        Entry::begin(&request, "10.0.0.7:50123".parse().unwrap(), &HeaderValue::from_static("rid-1"), started, true);
    entry.duration = started.elapsed();
    entry.status = 200;
    entry.bytes_in = 5;
    entry.bytes_out = 42;
    entry
}

fn routed(decision: Decision, fallback_from: Option<&str>) -> RouteTaken {
    RouteTaken {
        function: "hello".into(),
        trigger: "/hello-prod".into(),
        alias: Some("prod".into()),
        version: "v2".into(),
        decision,
        fallback_from: fallback_from.map(Into::into),
        rule: matches!(decision, Decision::Rule(_)).then(|| "x-user-group in beta,qa".into()),
        upstream: Arc::new(UpstreamHealth::new("127.0.0.1:9002", UpstreamPolicy::default())),
    }
}

fn line_of(entry: &Entry, json: bool) -> Vec<u8> {
    let mut scratch = format::Scratch::default();
    scratch.line(entry, if json { Format::Json } else { Format::Combined }).to_vec()
}

fn json_of(entry: &Entry) -> serde_json::Value {
    let line = line_of(entry, true);
    assert_eq!(line.last(), Some(&b'\n'), "one line per request");
    serde_json::from_slice(&line).unwrap()
}

#[test]
fn a_json_line_names_the_route_and_the_weighted_slot() {
    let mut entry = entry("/hello-prod/cart?token=secret", &[]);
    entry.route = Some(routed(Decision::Rotation(37), None));
    entry.upstream_duration = Some(Duration::from_micros(1500));
    let line = json_of(&entry);
    assert_eq!(line["path"], "/hello-prod/cart", "the query (which may carry secrets) is not logged");
    assert_eq!(
        (line["function"].as_str(), line["alias"].as_str(), line["version"].as_str()),
        (Some("hello"), Some("prod"), Some("v2"))
    );
    assert_eq!((line["decision"].as_str(), line["decision_detail"].as_str()), (Some("weight"), Some("slot 37")));
    assert_eq!(
        (line["status"].as_u64(), line["bytes_in"].as_u64(), line["bytes_out"].as_u64()),
        (Some(200), Some(5), Some(42))
    );
    assert_eq!(line["upstream"], "127.0.0.1:9002");
    assert_eq!(line["upstream_ms"].as_f64(), Some(1.5));
    assert!(line["duration_ms"].as_f64().unwrap() >= 3.0);
    assert_eq!((line["client"].as_str(), line["request_id"].as_str()), (Some("10.0.0.7:50123"), Some("rid-1")));
    time::OffsetDateTime::parse(line["time"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
        .unwrap();
}

#[test]
fn each_decision_is_spelled_for_the_reader() {
    let spelled = |decision, fallback: Option<&str>| {
        let mut entry = entry("/hello-prod", &[]);
        entry.route = Some(routed(decision, fallback));
        entry.decision()
    };
    assert_eq!(spelled(Decision::Fixed, None), (Some("fixed"), None));
    assert_eq!(spelled(Decision::Rule(1), None), (Some("rule"), Some("x-user-group in beta,qa".into())));
    assert_eq!(spelled(Decision::Sticky(12), None), (Some("sticky"), Some("bucket 12".into())));
    assert_eq!(
        spelled(Decision::Rotation(9), Some("v3")),
        (Some("fallback"), Some("v3 ejected (weight slot 9)".into()))
    );
    assert_eq!(
        spelled(Decision::Rule(2), Some("v3")),
        (Some("fallback"), Some("v3 ejected (rule x-user-group in beta,qa)".into()))
    );
}

#[test]
fn an_unrouted_request_has_its_error_code_and_no_route() {
    let mut entry = entry("/nothing-here", &[]);
    entry.status = 404;
    entry.error_code = Some("APIG.0101");
    let line = json_of(&entry);
    assert_eq!(line["error_code"], "APIG.0101");
    assert!(line["function"].is_null() && line["version"].is_null() && line["decision"].is_null());
}

#[test]
fn a_combined_line_is_apaches_then_graygates_fields_and_cannot_be_forged() {
    let mut entry =
        entry("/hello-prod", &[("user-agent", "curl/8 \"x\" rid=forged"), ("referer", "https://shop.example/")]);
    entry.request_id = HeaderValue::from_static("rid-1 fn=forged");
    entry.route = Some(routed(Decision::Sticky(4), None));
    let line = String::from_utf8(line_of(&entry, false)).unwrap();
    assert!(line.starts_with("10.0.0.7 - - ["), "{line}");
    assert!(
        line.contains(
            "] \"GET /hello-prod HTTP/1.1\" 200 42 \"https://shop.example/\" \"curl/8 \\x22x\\x22 rid=forged\""
        ),
        "{line}"
    );
    assert!(line.contains(" rid=rid-1\\x20fn=forged fn=hello trigger=/hello-prod alias=prod version=v2 decision=sticky detail=\"bucket 4\" upstream=127.0.0.1:9002 "), "{line}");
    assert!(line.ends_with(" retries=0 code=-\n"), "{line}");
    assert_eq!(line.matches('\n').count(), 1);
}

fn settings(sink: Sink, buffer_bytes: usize, sample: f64) -> AccessLogSettings {
    AccessLogSettings { sink, format: Format::Json, sample, buffer_bytes }
}

#[test]
fn a_full_queue_drops_and_counts_instead_of_waiting() {
    // The writer is stuck opening a pipe nobody reads yet: the buffer (a few lines) fills.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("access.fifo");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let dropped = IntCounter::new("dropped", "test").unwrap();
    let (log, writer) = AccessLog::start(&settings(Sink::File(fifo.clone()), 2000, 1.0), dropped.clone()).unwrap();
    let started = Instant::now();
    for _ in 0..20 {
        log.submit(Box::new(entry("/hello-prod", &[])));
    }
    assert!(started.elapsed() < FLUSH, "submit never waits for the writer");
    let kept = 20 - dropped.get();
    assert!((2..=6).contains(&kept), "2,000 bytes hold a few lines: {kept} kept");
    drop(log);
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::open(&fifo).unwrap(), &mut text).unwrap();
    writer.join().unwrap();
    assert_eq!(text.lines().count() as u64, kept, "what was buffered is written when the last handle goes");
    assert!(text.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()));
}

#[test]
fn lines_are_batched_and_their_times_are_the_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let (log, writer) =
        AccessLog::start(&settings(Sink::File(path.clone()), 1 << 20, 1.0), IntCounter::new("d", "t").unwrap())
            .unwrap();
    let first = entry("/hello-prod", &[]);
    let time = first.time;
    log.submit(Box::new(first));
    for _ in 0..99 {
        log.submit(Box::new(entry("/hello-prod", &[])));
    }
    drop(log);
    writer.join().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 100);
    let line: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    let logged =
        time::OffsetDateTime::parse(line["time"].as_str().unwrap(), &time::format_description::well_known::Rfc3339)
            .unwrap();
    let micros = |t: time::OffsetDateTime| t.unix_timestamp_nanos() / 1000;
    assert_eq!(micros(logged), micros(time::OffsetDateTime::from(time)), "the request's own time, to the microsecond");
    assert!(line["duration_ms"].as_f64().unwrap() >= 3.0, "measured when queued, not when written: {line}");
}

#[test]
fn sampling_logs_about_its_share() {
    let log =
        |sample| AccessLog::start(&settings(Sink::Stdout, 4096, sample), IntCounter::new("d", "t").unwrap()).unwrap().0;
    let (all, none, tenth) = (log(1.0), log(0.0), log(0.1));
    assert!((0..1000).all(|_| all.sampled()));
    assert!(!(0..1000).any(|_| none.sampled()));
    let logged = (0..10_000).filter(|_| tenth.sampled()).count();
    assert!((700..1300).contains(&logged), "{logged} of 10,000 at 0.1");
}
