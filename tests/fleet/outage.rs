//! etcd goes away: the data plane keeps serving the last good table with no failed request,
//! management writes answer 503 in each vendor's shape, a replica restarted meanwhile serves
//! its snapshot, and when etcd is back every replica catches up. A replica cut off while
//! etcd compacted past its revision re-lists and converges; one with neither etcd nor a
//! snapshot is not ready until etcd answers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde_json::json;

use crate::Fleet;
use crate::cluster::{Options, Relay, Replica, functions, split};
use crate::support::{TestClient, metric_value};

/// Clients hammering a replica's data plane until stopped: status (0 for a failed
/// exchange) → count.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<tokio::task::JoinHandle<BTreeMap<u16, usize>>>,
}

impl Load {
    fn start(replicas: &[&Replica], per_replica: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for replica in replicas {
            for _ in 0..per_replica {
                let (client, stop) = (TestClient::new(replica.data), Arc::clone(&stop));
                workers.push(tokio::spawn(async move {
                    let mut seen = BTreeMap::new();
                    while !stop.load(Ordering::Relaxed) {
                        let answer = client.try_request(Method::GET, "/hello-prod", &[], Bytes::new()).await;
                        *seen.entry(answer.map_or(0, |a| a.status.as_u16())).or_insert(0) += 1;
                    }
                    seen
                }));
            }
        }
        Load { stop, workers }
    }

    async fn finish(self) -> BTreeMap<u16, usize> {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = BTreeMap::new();
        for worker in self.workers {
            for (status, count) in worker.await.unwrap() {
                *total.entry(status).or_insert(0) += count;
            }
        }
        total
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_outage_fails_no_request_and_writes_answer_503_until_it_is_back() {
    let mut fleet = Fleet::start(&["a", "b"]).await;
    let load = {
        let [a, b] = &fleet.replicas[..] else { unreachable!() };
        Load::start(&[a, b], 4)
    };
    fleet.etcd.kill();
    {
        let [a, b] = &fleet.replicas[..] else { unreachable!() };
        for replica in [a, b] {
            replica.wait_for(|(ready, _, _, connected)| ready && !connected, "saw etcd go").await;
            let metrics = replica.metrics().await;
            assert_eq!(metric_value(&metrics, "graygate_store_connected"), 0.0);
        }
        let alias = functions("hello", "latest", "/aliases/prod");
        let refused = a.fg(Method::PUT, &alias, Some(json!({ "version": "v2" })), &[]).await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text());
        assert_eq!(refused.json()["error_code"], "FSS.0503");
        let versions = json!([{ "CodeVersion": "v2", "Percentage": 100 }]).to_string();
        let params =
            [("Name", "hello"), ("Env", "staging"), ("Strategy", "percentage"), ("CodeVersions", versions.as_str())];
        let refused = b.esa("CreateRoutineCodeDeployment", &params).await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE, "{}", refused.text());
        assert_eq!(refused.json()["Code"], "ServiceUnavailable");
        // Reads are served from the table in force.
        let read = a.fg(Method::GET, &alias, None, &[]).await;
        assert_eq!((read.status, read.json()["version"].as_str()), (StatusCode::OK, Some("v1")));
    }

    fleet.etcd.resume().await;
    {
        let [a, b] = &fleet.replicas[..] else { unreachable!() };
        for replica in [a, b] {
            replica.wait_for(|(ready, _, _, connected)| ready && connected, "reconnected").await;
        }
        let alias = functions("hello", "latest", "/aliases/prod");
        let body = json!({ "version": "v1", "additional_version_weights": { "v2": 50 } });
        let written = a.fg(Method::PUT, &alias, Some(body), &[]).await;
        assert_eq!(written.status, StatusCode::OK, "{}", written.text());
        fleet.converge(a.revision().await).await;
    }
    let seen = load.finish().await;
    let total: usize = seen.values().sum();
    println!("data plane of 2 replicas through an etcd outage: {total} requests, by status (0: failed) {seen:?}");
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), [200], "every answer is a 200: {seen:?}");
    assert!(total > 500, "the load ran: {seen:?}");
    for replica in &fleet.replicas {
        assert_eq!(split(replica, "/hello-prod", 100).await.get("v2"), Some(&50), "{}", replica.name);
    }

    // A replica restarted while etcd is down starts from its snapshot and is ready; it
    // catches up with what changed meanwhile once etcd is back.
    let served = fleet.replicas[1].revision().await;
    fleet.etcd.kill();
    fleet.replicas[1].stop();
    fleet.replicas[1].restart();
    let (ready, _, revision, connected) =
        fleet.replicas[1].wait_for(|(ready, ..)| ready, "ready from its snapshot").await;
    assert!(ready && !connected);
    assert_eq!(revision, served, "it serves the revision it had");
    assert_eq!(split(&fleet.replicas[1], "/hello-prod", 100).await.get("v2"), Some(&50));
    fleet.etcd.resume().await;
    let a = &fleet.replicas[0];
    a.wait_for(|(_, _, _, connected)| connected, "reconnected").await;
    let alias = functions("hello", "latest", "/aliases/prod");
    assert_eq!(a.fg(Method::PUT, &alias, Some(json!({ "version": "v3" })), &[]).await.status, StatusCode::OK);
    fleet.converge(a.revision().await).await;
    assert_eq!(fleet.replicas[1].client.get("/hello-prod").await.version(), "v3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_while_etcd_compacts_past_it_relists_and_converges() {
    let mut fleet = Fleet::start(&["a"]).await;
    let relay = Relay::to(fleet.etcd.client_port).await;
    let endpoints = [format!("http://127.0.0.1:{}", relay.port)];
    let options = Options::plain(&endpoints);
    let c = Replica::start("c", fleet.dir.path(), &options).await;
    c.wait_revision(fleet.pushed).await;

    relay.cut();
    c.wait_for(|(_, _, _, connected)| !connected, "lost etcd").await;
    let a = &fleet.replicas[0];
    let alias = functions("hello", "latest", "/aliases/prod");
    for weight in [10, 20, 30] {
        let body = json!({ "version": "v1", "additional_version_weights": { "v2": weight } });
        assert_eq!(a.fg(Method::PUT, &alias, Some(body), &[]).await.status, StatusCode::OK);
    }
    let latest = a.revision().await;
    let now = fleet.etcd.revision();
    fleet.etcd.etcdctl(&["compaction", &now.to_string()]);

    relay.restore();
    c.wait_revision(latest).await;
    assert!(c.log().contains("compacted"), "the replica re-listed after the compaction:\n{}", c.log());
    assert_eq!(split(&c, "/hello-prod", 100).await.get("v2"), Some(&30));
    fleet.replicas.push(c);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_etcd_and_without_a_snapshot_a_replica_is_not_ready_until_etcd_answers() {
    let mut fleet = Fleet::start(&[]).await;
    fleet.etcd.kill();
    let endpoints = [fleet.etcd.endpoint()];
    let options = Options::plain(&endpoints);
    let lonely = Replica::spawn("lonely", fleet.dir.path(), &options);
    lonely.wait_for(|(ready, ..)| !ready, "answered /readyz").await;
    let answer = lonely.client.try_request(Method::GET, "/hello-prod", &[], Bytes::new()).await.unwrap();
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.text());
    assert_eq!(answer.json()["error_code"], "APIG.0503");

    fleet.etcd.resume().await;
    lonely.wait_revision(fleet.pushed).await;
    assert_eq!(lonely.client.get("/hello-prod").await.version(), "v1");
    fleet.replicas.push(lonely);
}
