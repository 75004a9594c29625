//! `/fleet`: every live replica with the revision it serves, on any replica; a replica that
//! is killed disappears when its lease expires, one that stops disappears at once.

use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use serde_json::Value;

use crate::Fleet;
use crate::cluster::functions;
use crate::support::PATIENCE;

fn ids(view: &Value) -> Vec<String> {
    view["replicas"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
}

/// Polls `/fleet` on `fleet.replicas[0]` until `condition` holds.
async fn wait_view(fleet: &Fleet, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let view = fleet.replicas[0].admin_get("/fleet").await.unwrap().json();
        if condition(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "/fleet never {what}: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_view_lists_every_replica_and_its_revision_and_drops_a_killed_one() {
    let mut fleet = Fleet::start_with(&["a", "b", "c"], 2, |etcd| vec![etcd.endpoint()]).await;
    let unauthenticated = crate::support::TestClient::new(fleet.replicas[0].admin).get("/fleet").await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);

    let view =
        wait_view(&fleet, "listed three converged replicas", |v| ids(v) == ["a", "b", "c"] && v["converged"] == true)
            .await;
    for replica in view["replicas"].as_array().unwrap() {
        assert_eq!(replica["revision"], fleet.pushed, "{view}");
        assert_eq!((replica["ready"].as_bool(), replica["connected"].as_bool()), (Some(true), Some(true)), "{view}");
        assert!(replica["data_addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{view}");
    }

    // A change converges, and the view says so.
    let alias = functions("hello", "latest", "/aliases/prod");
    let changed = fleet.replicas[1].fg(Method::PUT, &alias, Some(serde_json::json!({ "version": "v2" })), &[]).await;
    assert_eq!(changed.status, StatusCode::OK);
    let revision = fleet.replicas[1].revision().await;
    wait_view(&fleet, "converged on the change", |v| {
        v["converged"] == true && v["replicas"].as_array().unwrap().iter().all(|r| r["revision"] == revision)
    })
    .await;

    // kill -9: its registration lives until its lease (2 s) expires.
    fleet.replicas[2].kill();
    let killed = Instant::now();
    wait_view(&fleet, "dropped the killed replica", |v| ids(v) == ["a", "b"]).await;
    println!("a killed replica left /fleet {:?} after the kill (lease 2 s)", killed.elapsed());
    // SIGTERM: the lease is revoked as it stops.
    fleet.replicas[1].stop();
    let stopped = Instant::now();
    wait_view(&fleet, "dropped the stopped replica", |v| ids(v) == ["a"]).await;
    assert!(stopped.elapsed() < Duration::from_secs(2), "a stopped replica leaves before its lease would expire");
}
