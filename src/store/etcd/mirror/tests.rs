use super::*;
use crate::store::etcd::wire::Event;

const HEAD: &str = "/gg/routes/head";

fn kv(key: &str, revision: i64, value: &str) -> KeyValue {
    KeyValue {
        key: Bytes::copy_from_slice(key.as_bytes()),
        create_revision: revision,
        mod_revision: revision,
        value: Bytes::copy_from_slice(value.as_bytes()),
    }
}

fn put(key: &str, revision: i64, value: &str) -> Event {
    Event { kind: String::new(), kv: kv(key, revision, value) }
}

fn delete(key: &str, revision: i64) -> Event {
    Event { kind: "DELETE".into(), kv: kv(key, revision, "") }
}

fn head(set: &str) -> String {
    format!(r#"{{"set":"{set}","project_id":"p","region":"local","format":1}}"#)
}

fn function(name: &str, port: u16) -> String {
    format!(r#"{{"name":"{name}","upstream":"http://127.0.0.1:{port}"}}"#)
}

fn key(set: &str, name: &str) -> String {
    format!("/gg/routes/set/{set}/fn/{name}")
}

fn upstreams(mirror: &Mirror) -> Vec<(String, String)> {
    let state = mirror.state().unwrap_or_else(|e| unreachable!("{e}")).unwrap_or_else(|| unreachable!("a state"));
    state.routes.functions.iter().map(|f| (f.name.clone(), f.upstream.clone())).collect()
}

fn mirror() -> Mirror {
    Mirror::new(Layout::new("/gg"))
}

#[test]
fn events_build_the_state_and_only_state_keys_change_its_version() {
    let mut mirror = mirror();
    assert!(mirror.state().unwrap_or_else(|e| unreachable!("{e}")).is_none(), "no head, no state");
    assert!(mirror.apply_events(&[put(HEAD, 2, &head("s1")), put(&key("s1", "a"), 2, &function("a", 1))]));
    assert_eq!(upstreams(&mirror), [("a".into(), "http://127.0.0.1:1".into())]);
    assert_eq!((mirror.complete, mirror.state_revision, mirror.version), (2, 2, 1));

    // A push stages a new set: nothing of the state changes until the head names it.
    assert!(!mirror.apply_events(&[put(&key("s2", "b"), 3, &function("b", 2))]));
    assert!(!mirror.apply_events(&[put("/gg/replicas/r1", 4, "{}")]));
    assert_eq!(mirror.version, 1);
    assert!(mirror.apply_events(&[put(HEAD, 5, &head("s2")), delete(&key("s1", "a"), 5)]));
    assert_eq!(upstreams(&mirror), [("b".into(), "http://127.0.0.1:2".into())]);
    assert_eq!((mirror.state_revision, mirror.version), (5, 2));
}

#[test]
fn an_older_write_never_replaces_a_newer_one_and_the_echo_of_our_own_commit_changes_nothing() {
    let mut mirror = mirror();
    mirror.reconcile(vec![kv(HEAD, 2, &head("s1")), kv(&key("s1", "a"), 2, &function("a", 1))], Vec::new(), 2);
    // This replica commits at 7; the watch then delivers 7 again: nothing changes.
    assert!(mirror.apply_own(vec![Own::Put(key("s1", "a"), Bytes::from(function("a", 7)))], 7));
    let version = mirror.version;
    assert!(!mirror.apply_events(&[put(&key("s1", "a"), 7, &function("a", 7))]));
    assert_eq!(mirror.version, version);
    // A listing taken before the commit (at 6) must not undo it.
    assert!(!mirror.reconcile(
        vec![kv(HEAD, 2, &head("s1")), kv(&key("s1", "a"), 6, &function("a", 6))],
        Vec::new(),
        6
    ));
    assert_eq!(upstreams(&mirror), [("a".into(), "http://127.0.0.1:7".into())]);
    // Nor may a late event below what is complete.
    assert!(!mirror.apply_events(&[put(&key("s1", "a"), 3, &function("a", 3))]));
    assert_eq!(upstreams(&mirror), [("a".into(), "http://127.0.0.1:7".into())]);
}

#[test]
fn a_listing_deletes_what_it_no_longer_holds() {
    let mut mirror = mirror();
    let first = vec![
        kv(HEAD, 2, &head("s1")),
        kv(&key("s1", "a"), 2, &function("a", 1)),
        kv(&key("s1", "b"), 3, &function("b", 2)),
    ];
    assert!(mirror.reconcile(first, vec![kv("/gg/replicas/r1", 3, "not json")], 3));
    assert!(!mirror.reconcile(
        vec![
            kv(HEAD, 2, &head("s1")),
            kv(&key("s1", "a"), 2, &function("a", 1)),
            kv(&key("s1", "b"), 3, &function("b", 2))
        ],
        Vec::new(),
        9
    ));
    assert!(mirror.reconcile(
        vec![kv(HEAD, 2, &head("s1")), kv(&key("s1", "a"), 2, &function("a", 1))],
        Vec::new(),
        12
    ));
    assert_eq!(upstreams(&mirror), [("a".into(), "http://127.0.0.1:1".into())]);
    assert_eq!(mirror.state_revision, 12, "a deletion seen by a listing is dated at the listing");
    assert!(mirror.replicas().is_empty());
}

#[test]
fn a_bad_value_is_a_problem_naming_its_key() {
    let mut mirror = mirror();
    mirror.apply_events(&[
        put(HEAD, 2, &head("s1")),
        put(&key("s1", "a"), 2, "{not json"),
        put(&key("s1", "b"), 2, &function("b", 1)),
        put("/gg/routes/set/s1/rollout/x", 2, "{}"),
    ]);
    let error = match mirror.state() {
        Err(error) => error,
        Ok(_) => unreachable!("a bad value is refused"),
    };
    let files: Vec<&str> = error.problems.iter().map(|p| p.file.as_str()).collect();
    assert_eq!(files, [key("s1", "a").as_str(), "/gg/routes/set/s1/rollout/x"]);

    let mut mirror = self::mirror();
    mirror.apply_events(&[put(HEAD, 2, &head("s1")), put(&key("s1", "b"), 2, &function("b", 1))]);
    let state = mirror.state().ok().flatten().unwrap_or_else(|| unreachable!("a state"));
    let issues = vec![
        crate::routes::Issue { path: "functions[0].upstream".into(), message: "bad".into() },
        crate::routes::Issue { path: "project_id".into(), message: "bad".into() },
    ];
    let located = locate(&state, issues);
    assert_eq!(located.problems[0].file, key("s1", "b"));
    assert_eq!(located.problems[0].path, "upstream");
    assert_eq!(located.problems[1].file, HEAD);
}

#[test]
fn a_rewind_makes_the_next_listing_win_whatever_its_revisions() {
    let mut mirror = mirror();
    mirror.reconcile(vec![kv(HEAD, 50, &head("s1")), kv(&key("s1", "a"), 50, &function("a", 1))], Vec::new(), 50);
    mirror.rewind();
    mirror.reconcile(vec![kv(HEAD, 4, &head("s1")), kv(&key("s1", "a"), 4, &function("a", 9))], Vec::new(), 4);
    assert_eq!(upstreams(&mirror), [("a".into(), "http://127.0.0.1:9".into())]);
    assert_eq!(mirror.complete, 4);
}
