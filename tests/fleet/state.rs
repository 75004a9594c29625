//! The stored state itself: a bad value put by hand is refused like an invalid routes file
//! (named by its key, the last good table serving, the failure counter rising); `routes
//! push` of 10,000 functions is applied by every replica within a second; `pull` prints a
//! file that `check` accepts and `push` round-trips unchanged; `--expect-revision` refuses a
//! state that moved.

use std::time::Instant;

use http::{Method, StatusCode};

use crate::Fleet;
use crate::cluster::{cli, functions, push, split};
use crate::support::metric_value;

const FAILURE: &str = "graygate_config_reloads_total{result=\"failure\"}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_value_put_by_hand_is_rejected_naming_its_key_and_the_last_good_table_serves() {
    let fleet = Fleet::start(&["a", "b"]).await;
    let set = fleet.etcd.current_set("/fleet-test");
    let key = format!("/fleet-test/routes/set/{set}/fn/hello");
    let good = fleet.etcd.etcdctl(&["get", &key, "--print-value-only"]).trim().to_owned();

    let broken = [
        ("{\"name\": \"hello\", ".to_owned(), "EOF"),
        (good.replace("\"version\":\"v1\"}", "\"version\":\"v9\"}"), "aliases[0].version"),
        (good.replacen("\"upstream\"", "\"upstreams\"", 1), "unknown field"),
    ];
    for (round, (value, expected)) in broken.iter().enumerate() {
        let failures: Vec<f64> = {
            let mut seen = Vec::new();
            for replica in &fleet.replicas {
                seen.push(metric_value(&replica.metrics().await, FAILURE));
            }
            seen
        };
        fleet.etcd.etcdctl(&["put", &key, value]);
        for (replica, before) in fleet.replicas.iter().zip(failures) {
            let deadline = Instant::now() + crate::support::PATIENCE;
            while metric_value(&replica.metrics().await, FAILURE) <= before {
                assert!(Instant::now() < deadline, "{} did not reject value {round}:\n{}", replica.name, replica.log());
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            assert_eq!(replica.revision().await, fleet.pushed, "{} kept the last good table", replica.name);
            assert_eq!(replica.client.get("/hello-prod").await.version(), "v1");
            // The log line may follow the counter by a moment (the rejection is audited first).
            let deadline = Instant::now() + crate::support::PATIENCE;
            loop {
                let log = replica.log();
                let line = log.lines().rev().find(|l| l.contains("rejected")).unwrap_or_default().to_owned();
                if line.contains(&key) && line.contains(expected) {
                    break;
                }
                assert!(Instant::now() < deadline, "{}: {line}", replica.name);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        // Every replica reports the rejection (as an xDS NACK would) in the fleet view.
        let deadline = Instant::now() + crate::support::PATIENCE;
        loop {
            let view = fleet.replicas[0].admin_get("/fleet").await.unwrap().json();
            let reported = view["replicas"].as_array().unwrap().iter().all(|replica| {
                let rejection = &replica["last_rejection"];
                rejection["problems"].to_string().contains(expected) && rejection["problems"].to_string().contains(&key)
            });
            if reported {
                break;
            }
            assert!(Instant::now() < deadline, "/fleet does not show rejection {round}: {view}");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    // Fixed by hand: applied everywhere.
    let fixed = good.replace("\"version\":\"v1\"}", "\"version\":\"v2\"}");
    // The put's own revision: a replica's audit record of the hand edit comes after it.
    let put = fleet.etcd.etcdctl(&["put", &key, &fixed, "-w", "json"]);
    let revision = serde_json::from_str::<serde_json::Value>(&put).unwrap()["header"]["revision"].as_u64().unwrap();
    fleet.converge(revision).await;
    for replica in &fleet.replicas {
        assert_eq!(replica.client.get("/hello-prod").await.version(), "v2");
    }
}

/// A routes file of `count` functions, each with two versions, a 90/10 alias and a trigger.
fn many(count: usize, port: u16) -> String {
    let functions: Vec<serde_json::Value> = (0..count)
        .map(|i| {
            serde_json::json!({
                "name": format!("fn{i:05}"),
                "upstream": format!("http://127.0.0.1:{port}"),
                "versions": [
                    { "version": "v1", "upstream": format!("http://127.0.0.1:{port}") },
                    { "version": "v2", "upstream": format!("http://127.0.0.1:{port}") },
                ],
                "aliases": [{ "name": "prod", "version": "v1", "additional_version_weights": { "v2": 10 } }],
                "triggers": [{ "target": "prod" }],
            })
        })
        .collect();
    serde_json::json!({ "project_id": crate::cluster::PROJECT, "functions": functions }).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_functions_pushed_are_applied_by_every_replica_within_a_second() {
    let fleet = Fleet::start(&["a", "b", "c"]).await;
    let port = fleet.backends["v1"].port();
    let started = Instant::now();
    let revision = push(&fleet.config(), fleet.dir.path(), &many(10_000, port));
    let pushed_in = started.elapsed();
    let mut applied = Vec::new();
    for replica in &fleet.replicas {
        applied.push((replica.name.clone(), replica.wait_revision(revision).await));
    }
    println!("10,000 functions: push took {pushed_in:?}; applied after the push returned: {applied:?}");
    for (name, after) in &applied {
        assert!(after.as_secs_f64() <= 1.0, "{name} applied 10,000 functions {after:?} after the push");
    }
    for replica in &fleet.replicas {
        assert_eq!(split(replica, "/fn09999-prod", 10).await.get("v2"), Some(&1));
        assert_eq!(replica.client.get("/hello-prod").await.status, StatusCode::NOT_FOUND, "the old state is gone");
    }
    // An edit on top of the large state, through the API.
    let alias = functions("fn00042", "latest", "/aliases/prod");
    let body = serde_json::json!({ "version": "v1", "additional_version_weights": { "v2": 50 } });
    let started = Instant::now();
    let answer = fleet.replicas[0].fg(Method::PUT, &alias, Some(body), &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text());
    let converged = fleet.converge(fleet.replicas[0].revision().await).await;
    println!(
        "one alias edit over 10,000 functions: answered in {:?}, converged {converged:?} later",
        started.elapsed()
    );
    assert_eq!(split(&fleet.replicas[2], "/fn00042-prod", 100).await.get("v2"), Some(&50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_prints_what_check_accepts_and_push_round_trips_it_unchanged() {
    let fleet = Fleet::start(&["a"]).await;
    let config = fleet.config();
    let config = config.to_str().unwrap();
    let (code, pulled, stderr) = cli(&["routes", "pull", "--config", config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(pulled.starts_with(&format!("# graygate routes pull: revision {}", fleet.pushed)), "{pulled}");
    let file = fleet.dir.path().join("pulled.yaml");
    std::fs::write(&file, &pulled).unwrap();
    let file = file.to_str().unwrap();

    // The pulled file validates on its own, as a routes file.
    let check_config = fleet.dir.path().join("check-file.yaml");
    std::fs::write(&check_config, "routes: pulled.yaml\n").unwrap();
    let (code, stdout, stderr) = cli(&["check", "--config", check_config.to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // `check` against etcd validates the stored state.
    let (code, stdout, stderr) = cli(&["check", "--config", config]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains(&format!("etcd /fleet-test at revision {}: ok", fleet.pushed)), "{stdout}");

    let (code, stdout, stderr) = cli(&["routes", "push", file, "--config", config]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("unchanged"), "{stdout}");
    assert_eq!(fleet.replicas[0].revision().await, fleet.pushed);

    // --expect-revision: refused once the state moved, accepted at the revision it is at.
    let alias = functions("hello", "latest", "/aliases/prod");
    let moved = fleet.replicas[0].fg(Method::PUT, &alias, Some(serde_json::json!({ "version": "v2" })), &[]).await;
    assert_eq!(moved.status, StatusCode::OK);
    let now = fleet.replicas[0].revision().await;
    let stale = fleet.pushed.to_string();
    let (code, _, stderr) = cli(&["routes", "push", file, "--config", config, "--expect-revision", &stale]);
    assert_eq!(code, 1, "a stale --expect-revision is refused");
    assert!(stderr.contains(&format!("at revision {now}")), "{stderr}");
    assert_eq!(fleet.replicas[0].client.get("/hello-prod").await.version(), "v2", "nothing was pushed");
    let (code, stdout, stderr) =
        cli(&["routes", "push", file, "--config", config, "--expect-revision", &now.to_string()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let revision: u64 = stdout.trim().rsplit(' ').next().unwrap().parse().unwrap();
    fleet.replicas[0].wait_revision(revision).await;
    assert_eq!(fleet.replicas[0].client.get("/hello-prod").await.version(), "v1", "the pulled state is back");
}
