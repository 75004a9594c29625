//! A change through one replica is served by every other within a second (the target is a
//! p99 of 200 ms on loopback): FunctionGraph alias updates and ESA deployments alike.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::json;

use crate::Fleet;
use crate::cluster::{functions, split};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alias_put_through_one_replica_is_served_by_the_others_within_a_second() {
    let fleet = Fleet::start(&["a", "b", "c"]).await;
    let [a, b, c] = &fleet.replicas[..] else { unreachable!() };
    let alias = functions("hello", "latest", "/aliases/prod");

    let mut delays = Vec::new();
    for write in 0..100 {
        let weight = write % 99 + 1;
        let body = json!({ "version": "v1", "additional_version_weights": { "v2": weight } });
        let answer = a.fg(Method::PUT, &alias, Some(body), &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
        let acknowledged = Instant::now();
        // The writer serves the change as its answer returns: its revision is the change's.
        let revision = a.revision().await;
        for other in [b, c] {
            other.wait_revision(revision).await;
            delays.push(acknowledged.elapsed());
        }
        if write == 0 || write == 99 {
            for replica in [a, b, c] {
                let seen = split(replica, "/hello-prod", 100).await;
                assert_eq!(seen.get("v2").copied().unwrap_or(0), weight, "{}: {seen:?}", replica.name);
            }
        }
    }
    delays.sort();
    let (p50, p99) = (percentile(&delays, 0.5), percentile(&delays, 0.99));
    println!(
        "propagation over 100 writes to 2 other replicas: p50 {p50:?}, p99 {p99:?}, max {:?}",
        delays[delays.len() - 1]
    );
    assert!(p99 <= Duration::from_secs(1), "p99 {p99:?} over a second");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_esa_deployment_through_one_replica_is_served_by_the_others() {
    let fleet = Fleet::start(&["a", "b", "c"]).await;
    let [a, b, c] = &fleet.replicas[..] else { unreachable!() };
    let versions =
        json!([{ "CodeVersion": "v3", "Percentage": 30 }, { "CodeVersion": "v2", "Percentage": 70 }]).to_string();
    let params =
        [("Name", "hello"), ("Env", "staging"), ("Strategy", "percentage"), ("CodeVersions", versions.as_str())];
    let answer = b.esa("CreateRoutineCodeDeployment", &params).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let revision = b.revision().await;
    fleet.converge(revision).await;
    for replica in [a, b, c] {
        let seen = split(replica, "/hello-staging", 100).await;
        assert_eq!((seen.get("v2"), seen.get("v3")), (Some(&70), Some(&30)), "{}: {seen:?}", replica.name);
    }
}
