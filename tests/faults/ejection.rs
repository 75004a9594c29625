//! Outlier ejection with alias fallback, and the per-upstream connection cap.

use super::*;

// === 7. outlier ejection and alias fallback ===

fn ejection_routes(v1: SocketAddr, v2: SocketAddr) -> String {
    format!(
        r#"
project_id: p
functions:
  - name: hello
    upstream: "http://{v1}"
    versions:
      - {{ version: v1, upstream: "http://{v1}" }}
      - {{ version: v2, upstream: "http://{v2}" }}
    aliases:
      - name: prod
        version: v1
        additional_version_weights: {{ v2: 50 }}
    triggers:
      - {{ target: prod }}
      - {{ target: v2 }}
"#
    )
}

const EJECTION: Duration = Duration::from_secs(1);

async fn ejecting_gateway(v1: SocketAddr, v2: SocketAddr) -> Gateway {
    Gateway::start_with(&ejection_routes(v1, v2), |config| {
        config.upstream.consecutive_failures = 3;
        config.upstream.ejection = EJECTION;
    })
    .await
}

const FALLBACK: &str = r#"graygate_alias_fallback_total{alias="prod",function="hello",version="v2"}"#;

fn ejections(upstream: SocketAddr) -> String {
    format!("graygate_upstream_ejections_total{{upstream=\"{upstream}\"}}")
}

/// Sends alias requests until `v2` has failed `failures` more times; returns when the last
/// failure was answered. v1 always answers 200; anything else is v2 failing with `failing`
/// (an upstream's own 503 carries `X-Graygate-Version: v2`; the gateway's 502 does not).
async fn fail_v2(gw: &Gateway, failures: usize, failing: StatusCode) -> Instant {
    let mut seen = 0;
    for _ in 0..50 {
        let reply = get(gw, "/hello-prod").await;
        if reply.status == StatusCode::OK {
            assert_eq!(reply.version(), "v1", "{reply:?}");
            continue;
        }
        assert_eq!(reply.status, failing, "{}", reply.text());
        if failing == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.version(), "v2", "{reply:?}");
        } else {
            assert_eq!(reply.error_code(), "APIG.0202");
        }
        seen += 1;
        if seen == failures {
            return Instant::now();
        }
    }
    panic!("v2 failed only {seen} times in 50 requests");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_canary_is_ejected_its_share_goes_to_the_primary_and_it_is_readmitted() {
    let v1 = support::backends(&["v1"]).await["v1"];
    let record = Record::default();
    let v2 = origin(&record, None, |_, _| Act::Answer(status(503, "Service Unavailable"))).await;
    let gw = ejecting_gateway(v1, v2).await;

    let ejected_at = fail_v2(&gw, 3, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(record.count(), 3);
    assert_eq!(sample(&gw, &ejections(v2)).await, 1.0, "the third consecutive failure ejects v2");
    assert_eq!(sample(&gw, FALLBACK).await, 0.0);

    // While v2 is ejected, the alias sends everything to v1.
    let mut checked = 0;
    for _ in 0..10 {
        let started = Instant::now();
        let reply = get(&gw, "/hello-prod").await;
        if started.duration_since(ejected_at) > EJECTION - Duration::from_millis(200) {
            break; // too close to re-admission to say
        }
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.version(), "v1");
        checked += 1;
    }
    assert!(checked >= 4, "the machine is too slow to observe the ejection window ({checked} requests)");
    assert_eq!(record.count(), 3, "v2 got nothing while ejected");
    let fallbacks = sample(&gw, FALLBACK).await;
    assert!(fallbacks >= (checked / 2) as f64, "v2's half of {checked} requests fell back: {fallbacks}");

    // A trigger aimed at v2 itself has no alternative: it still reaches v2.
    if ejected_at.elapsed() < EJECTION - Duration::from_millis(100) {
        let direct = get(&gw, "/hello-v2").await;
        assert_eq!(direct.status, StatusCode::SERVICE_UNAVAILABLE, "{}", direct.text());
        assert_eq!(direct.version(), "v2", "never silently switched to another version");
        assert_eq!(record.count(), 4);
    }

    // After the ejection, v2 gets its share again; still failing, it is ejected again.
    tokio::time::sleep((ejected_at + EJECTION + Duration::from_millis(100)).saturating_duration_since(Instant::now()))
        .await;
    let before = record.count();
    let _ = fail_v2(&gw, 1, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(record.count(), before + 1, "v2 was re-admitted");
    let mut tries = 0;
    while sample(&gw, &ejections(v2)).await < 2.0 {
        tries += 1;
        assert!(tries < 5, "v2 was never ejected again");
        let _ = fail_v2(&gw, 1, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    assert_eq!(sample(&gw, &ejections(v2)).await, 2.0);
    assert_eq!(sample(&gw, &ejections(v1)).await, 0.0, "the healthy primary is never ejected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_canary_stops_failing_users_once_ejected() {
    let v1 = support::backends(&["v1"]).await["v1"];
    let v2 = closed_port().await;
    let gw = ejecting_gateway(v1, v2).await;
    let _ = fail_v2(&gw, 3, StatusCode::BAD_GATEWAY).await;
    assert_eq!(sample(&gw, &ejections(v2)).await, 1.0);
    let mut versions = HashMap::new();
    for _ in 0..6 {
        let reply = get(&gw, "/hello-prod").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        *versions.entry(reply.version().to_owned()).or_insert(0) += 1;
    }
    assert_eq!(versions.get("v1"), Some(&6), "{versions:?}");
    assert!(sample(&gw, FALLBACK).await >= 2.0);
    // The version's own trigger still reaches the dead upstream: an honest 502.
    let direct = get(&gw, "/hello-v2").await;
    assert_eq!(direct.status, StatusCode::BAD_GATEWAY, "{}", direct.text());
    assert_eq!(direct.error_code(), "APIG.0202");
}

// === 8. the per-upstream connection cap ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_more_than_max_connections_exchanges_reach_one_upstream_at_once() {
    let current = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let arrived = Arc::new(AtomicUsize::new(0));
    let release = Arc::new(tokio::sync::Semaphore::new(0));
    let gated = {
        let (current, peak, arrived, release) = (current.clone(), peak.clone(), arrived.clone(), release.clone());
        raw_backend(move |mut stream| {
            let (current, peak, arrived, release) = (current.clone(), peak.clone(), arrived.clone(), release.clone());
            async move {
                let mut buf = Vec::new();
                while read_request(&mut stream, &mut buf).await.is_some() {
                    let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    arrived.fetch_add(1, Ordering::SeqCst);
                    let permit = tokio::time::timeout(PATIENCE, release.acquire()).await;
                    if let Ok(Ok(permit)) = permit {
                        permit.forget();
                    }
                    current.fetch_sub(1, Ordering::SeqCst);
                    if stream.write_all(&ok("done")).await.is_err() {
                        return;
                    }
                }
            }
        })
        .await
    };
    let gw = Gateway::start_with(&routes(&[("capped", &http(gated))], None), |config| {
        config.upstream.max_connections = 2;
    })
    .await;
    let mut requests = Vec::new();
    for _ in 0..5 {
        let client = gw.client.clone();
        requests.push(tokio::spawn(async move { client.get("/capped-latest").await }));
    }
    let deadline = Instant::now() + PATIENCE;
    while arrived.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "two requests should reach the upstream");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(arrived.load(Ordering::SeqCst), 2, "the other three wait for a permit");
    release.add_permits(5);
    for request in requests {
        let answer = tokio::time::timeout(PATIENCE, request).await.unwrap().unwrap();
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        assert_eq!(answer.text(), "done");
    }
    assert_eq!(arrived.load(Ordering::SeqCst), 5);
    assert_eq!(peak.load(Ordering::SeqCst), 2, "never more than 2 at once");
}
