//! Conflicting changes through two replicas at once: exactly one commits, the other answers
//! 409 (or the refusal its business rule gives once it sees the winner), and every replica
//! ends on the same state. A stale `If-Match` answers 412 here too.

use http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::Fleet;
use crate::cluster::{Replica, functions, triggers};
use crate::support::Answer;

fn apig(name: &str, path: &str) -> Value {
    let event = json!({ "name": name, "path": path, "req_method": "ANY", "env_name": "RELEASE" });
    json!({ "trigger_type_code": "APIG", "event_data": event })
}

/// Runs two calls at once, one through each replica.
async fn race(first: (&Replica, Method, String, Value), second: (&Replica, Method, String, Value)) -> (Answer, Answer) {
    let (x, y) = tokio::join!(
        first.0.fg(first.1, &first.2, Some(first.3), &[]),
        second.0.fg(second.1, &second.2, Some(second.3), &[])
    );
    (x, y)
}

fn code(answer: &Answer) -> String {
    answer.json()["error_code"].as_str().unwrap_or_default().to_owned()
}

/// A trigger list without `invoke_url`: each replica answers with its own data plane's
/// address unless `public_url` names the load balancer in front of the fleet.
fn without_invoke_url(mut triggers: Value) -> Value {
    for trigger in triggers.as_array_mut().into_iter().flatten() {
        if let Some(event) = trigger.get_mut("event_data").and_then(Value::as_object_mut) {
            event.remove("invoke_url");
        }
    }
    triggers
}

/// Every replica serves one revision and lists the same aliases and triggers.
async fn assert_same_state(fleet: &Fleet) {
    let newest = {
        let mut newest = 0;
        for replica in &fleet.replicas {
            newest = newest.max(replica.revision().await);
        }
        newest
    };
    fleet.converge(newest).await;
    let mut seen = Vec::new();
    for replica in &fleet.replicas {
        let aliases = replica.fg(Method::GET, &functions("hello", "latest", "/aliases"), None, &[]).await.json();
        let hello = replica.fg(Method::GET, &triggers("hello", None), None, &[]).await.json();
        let other = replica.fg(Method::GET, &triggers("other", None), None, &[]).await.json();
        seen.push((aliases, without_invoke_url(hello), without_invoke_url(other)));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]), "replicas disagree: {seen:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conflicting_writes_through_two_replicas_commit_exactly_once() {
    let fleet = Fleet::start(&["a", "b"]).await;
    let [a, b] = &fleet.replicas[..] else { unreachable!() };

    // One request path for two functions, ten times over.
    for round in 0..10 {
        let (name, path) = (format!("API_shared{round}"), format!("/shared-{round}"));
        let (x, y) = race(
            (a, Method::POST, triggers("hello", Some("v1")), apig(&name, &path)),
            (b, Method::POST, triggers("other", Some("v1")), apig(&name, &path)),
        )
        .await;
        let mut statuses = [x.status, y.status];
        statuses.sort();
        assert_eq!(statuses, [StatusCode::CREATED, StatusCode::CONFLICT], "round {round}: {} / {}", x.text(), y.text());
        let loser = if x.status == StatusCode::CONFLICT { &x } else { &y };
        assert_eq!(code(loser), "FSS.1147", "{}", loser.text());
    }

    // One alias created twice.
    let aliases = functions("hello", "latest", "/aliases");
    let (x, y) = race(
        (a, Method::POST, aliases.clone(), json!({ "name": "beta", "version": "v2" })),
        (b, Method::POST, aliases.clone(), json!({ "name": "beta", "version": "v3" })),
    )
    .await;
    let mut statuses = [x.status, y.status];
    statuses.sort();
    assert_eq!(statuses, [StatusCode::OK, StatusCode::CONFLICT], "{} / {}", x.text(), y.text());
    let loser = if x.status == StatusCode::CONFLICT { &x } else { &y };
    assert_eq!(code(loser), "FSS.1063", "{}", loser.text());

    // An alias moved onto a version that the other replica deletes: one of them wins.
    let (x, y) = race(
        (a, Method::PUT, functions("hello", "latest", "/aliases/prod"), json!({ "version": "v3" })),
        (b, Method::DELETE, functions("hello", "v3", ""), Value::Null),
    )
    .await;
    let outcome = (x.status, y.status);
    let one_won =
        matches!(outcome, (StatusCode::OK, StatusCode::FORBIDDEN) | (StatusCode::NOT_FOUND, StatusCode::NO_CONTENT));
    assert!(one_won, "both or neither committed: {} / {}", x.text(), y.text());
    assert_same_state(&fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_if_match_is_412_across_replicas_and_changes_nothing() {
    let fleet = Fleet::start(&["a", "b"]).await;
    let [a, b] = &fleet.replicas[..] else { unreachable!() };
    let alias = functions("hello", "latest", "/aliases/prod");
    let read = a.fg(Method::GET, &alias, None, &[]).await;
    let etag = read.headers["etag"].to_str().unwrap().to_owned();

    // Someone else changes the alias through the other replica.
    let changed = b.fg(Method::PUT, &alias, Some(json!({ "version": "v2" })), &[]).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text());
    let revision = b.revision().await;
    a.wait_revision(revision).await;

    let stale = a.fg(Method::PUT, &alias, Some(json!({ "version": "v3" })), &[("if-match", &etag)]).await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED, "{}", stale.text());
    assert_eq!(code(&stale), "FSS.0412");
    let deleted = a.fg(Method::DELETE, &alias, None, &[("if-match", &etag)]).await;
    assert_eq!(deleted.status, StatusCode::PRECONDITION_FAILED, "{}", deleted.text());
    assert_eq!(a.revision().await, revision, "a refused precondition wrote nothing");
    assert_eq!(a.client.get("/hello-prod").await.version(), "v2");

    // With the current tag it goes through.
    let current = a.fg(Method::GET, &alias, None, &[]).await.headers["etag"].to_str().unwrap().to_owned();
    let fresh = a.fg(Method::PUT, &alias, Some(json!({ "version": "v3" })), &[("if-match", &current)]).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.text());
    b.wait_revision(a.revision().await).await;
    assert_eq!(b.client.get("/hello-prod").await.version(), "v3");
}
