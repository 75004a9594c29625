//! Durability and concurrency: restarts, parallel changes, hand edits and failed writes.

use super::*;

// === durability ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_exactly_what_was_acknowledged() {
    let (gw, up) = start(ROUTES, &["latest", "v1", "v2", "v3", "v4"]).await;
    let api = Api::of(&gw);
    let aliases = functions("hello", None, "/aliases");
    let code = json!({ "code_url": format!("http://{}", up["v4"]) });
    expect(&api.fg(Method::PUT, &functions("hello", None, "/code"), Some(code)).await, StatusCode::OK);
    let body = json!({ "version": "v4", "description": "fourth" });
    expect(&api.fg(Method::POST, &functions("hello", None, "/versions"), Some(body)).await, StatusCode::OK);
    let body = json!({ "name": "prod", "version": "v1", "additional_version_weights": { "v2": 20 } });
    expect(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::OK);
    let body = json!({ "name": "canary", "version": "v3", "additional_version_strategy": { "v4": { "combine_type": "and",
        "rules": [ { "rule_type": "Header", "param": "x-canary", "op": "=", "value": "yes" } ] } } });
    expect(&api.fg(Method::POST, &aliases, Some(body)).await, StatusCode::OK);
    expect(&api.fg(Method::POST, &aliases, Some(json!({ "name": "gone", "version": "v1" }))).await, StatusCode::OK);
    assert_eq!(
        api.fg(Method::DELETE, &functions("hello", None, "/aliases/gone"), None).await.status,
        StatusCode::NO_CONTENT
    );
    expect(
        &api.fg(Method::POST, &triggers("hello", Some("!prod"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    expect(
        &api.fg(Method::POST, &triggers("hello", Some("!canary"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    expect(
        &api.fg(Method::POST, &triggers("hello", Some("v4"), ""), Some(apig(Some("direct"), Some("/direct-v4")))).await,
        StatusCode::CREATED,
    );
    let doomed = expect(
        &api.fg(Method::POST, &triggers("hello", Some("v1"), ""), Some(apig(None, None))).await,
        StatusCode::CREATED,
    );
    let doomed = triggers("hello", Some("v1"), &format!("/APIG/{}", doomed["trigger_id"].as_str().unwrap()));
    assert_eq!(api.fg(Method::DELETE, &doomed, None).await.status, StatusCode::NO_CONTENT);
    let staging = code_versions(&[("v2", 75), ("v3", 25)]);
    let params =
        [("CodeVersions", staging.as_str()), ("Env", "staging"), ("Name", "hello"), ("Strategy", "percentage")];
    expect(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
    assert_disk_matches_memory(&gw);

    let spec = memory(&gw);
    let shown = |api: Api| async move {
        let mut views = Vec::new();
        for path in
            [functions("hello", None, "/aliases"), functions("hello", None, "/versions"), triggers("hello", None, "")]
        {
            let mut view = expect(&api.fg(Method::GET, &path, None).await, StatusCode::OK);
            // A restarted gateway listens on another port: its triggers' invoke_url moves.
            if let Some(triggers) = view.as_array_mut() {
                for trigger in triggers {
                    trigger["event_data"]["invoke_url"] = Value::Null;
                }
            }
            views.push(view);
        }
        let mut routine = expect(&api.esa("GetRoutine", &[("Name", "hello")]).await, StatusCode::OK);
        routine["RequestId"] = Value::Null;
        views.push(routine);
        views
    };
    let views = shown(api).await;

    let gw = restart(gw, |config| config.admin.tokens = vec![Secret::new(TOKEN)]).await;
    let api = Api::of(&gw);
    assert_eq!(memory(&gw), spec, "the restarted gateway runs something else");
    assert_eq!(shown(api.clone()).await, views, "the API shows something else after the restart");
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 80), ("v2", 20)]));
    assert_eq!(split(&gw.client, "/hello-canary", &[("x-canary", "yes")], 10).await, counts(&[("v4", 10)]));
    assert_eq!(split(&gw.client, "/hello-canary", &[], 10).await, counts(&[("v3", 10)]));
    assert_eq!(split(&gw.client, "/hello-staging", &[], 100).await, counts(&[("v2", 75), ("v3", 25)]));
    let direct = gw.client.get("/direct-v4").await;
    assert_eq!((served_by(&direct), direct.version()), ("v4".to_owned(), "v4".to_owned()));
    assert_eq!(gw.client.get("/hello-v1").await.status, StatusCode::NOT_FOUND);
    fg_error(
        &api.fg(Method::GET, &functions("hello", None, "/aliases/gone"), None).await,
        StatusCode::NOT_FOUND,
        "FSS.1053",
    );
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_changes_are_serialised_and_none_is_lost() {
    const TEMPLATE: &str = r#"
project_id: 0123456789abcdef0123456789abcdef
region: cn-north-4
functions:
  - name: hello
    upstream: "@latest@"
    versions:
      - { version: v1, upstream: "@v1@" }
      - { version: v2, upstream: "@v2@" }
    aliases:
      - { name: a, version: v1 }
      - { name: b, version: v1 }
      - { name: c, version: v1 }
    triggers:
      - { target: c }
"#;
    let (gw, up) = start(TEMPLATE, &["latest", "v1", "v2"]).await;
    let api = Api::of(&gw);
    let alias_names = ["a", "b", "c"];
    let generation_before = generation(&gw);

    // Burst: 50 alias PUTs at once (a distinct weight each) and 5 publishers.
    let mut puts = Vec::new();
    for i in 0..50usize {
        let (api, alias, weight) = (api.clone(), alias_names[i % 3], i as i64 + 1);
        puts.push(tokio::spawn(async move {
            let body = json!({ "version": "v1", "additional_version_weights": { "v2": weight } });
            let answer = api.fg(Method::PUT, &functions("hello", None, &format!("/aliases/{alias}")), Some(body)).await;
            (alias, weight, answer)
        }));
    }
    let mut publishers = Vec::new();
    for p in 0..5 {
        let (api, latest) = (api.clone(), up["latest"]);
        publishers.push(tokio::spawn(async move {
            let code = json!({ "code_url": format!("http://{latest}/p{p}") });
            let moved = api.fg(Method::PUT, &functions("hello", None, "/code"), Some(code)).await;
            let published = api
                .fg(Method::POST, &functions("hello", None, "/versions"), Some(json!({ "version": format!("p{p}") })))
                .await;
            (moved, published)
        }));
    }
    let mut successes = 0u64;
    let mut acknowledged: HashMap<&str, HashSet<i64>> = HashMap::new();
    for put in puts {
        let (alias, weight, answer) = put.await.unwrap();
        let body = expect(&answer, StatusCode::OK);
        assert_eq!(body["name"], alias, "{body}");
        acknowledged.entry(alias).or_default().insert(weight);
        successes += 1;
    }
    let mut published = Vec::new();
    for publisher in publishers {
        let (moved, version) = publisher.await.unwrap();
        expect(&moved, StatusCode::OK);
        successes += 1;
        if version.status == StatusCode::OK {
            published.push(version.json()["version"].as_str().unwrap().to_owned());
            successes += 1;
        } else {
            fg_error(&version, StatusCode::BAD_REQUEST, "FSS.1016");
        }
    }
    assert!(!published.is_empty(), "no publish went through");
    assert_eq!(generation(&gw), generation_before + successes, "a change was lost or applied twice");
    assert_disk_matches_memory(&gw);
    let spec = memory(&gw);
    let hello = &spec.functions[0];
    for alias in alias_names {
        let stored = hello.aliases.iter().find(|a| a.name == alias).unwrap().additional_version_weights["v2"];
        assert!(acknowledged[alias].contains(&stored), "alias {alias} holds {stored}, never acknowledged");
    }
    for version in &published {
        assert!(hello.versions.iter().any(|v| v.version == *version), "published {version} is missing");
    }

    // Chains: per alias, 10 PUTs one after the other, the three chains concurrently; the
    // last acknowledged value of each alias is what is stored and served.
    let generation_before = generation(&gw);
    let mut chains = Vec::new();
    for (k, alias) in alias_names.into_iter().enumerate() {
        let api = api.clone();
        chains.push(tokio::spawn(async move {
            let mut last = 0;
            for j in 0..10 {
                let weight = (k * 10 + j + 1) as i64;
                let body = json!({ "version": "v1", "additional_version_weights": { "v2": weight } });
                let answer =
                    api.fg(Method::PUT, &functions("hello", None, &format!("/aliases/{alias}")), Some(body)).await;
                assert_eq!(expect(&answer, StatusCode::OK)["additional_version_weights"]["v2"], weight);
                last = weight;
            }
            (alias, last)
        }));
    }
    let mut last = HashMap::new();
    for chain in chains {
        let (alias, weight) = chain.await.unwrap();
        last.insert(alias, weight);
    }
    assert_eq!(generation(&gw), generation_before + 30);
    assert_disk_matches_memory(&gw);
    let spec = memory(&gw);
    for alias in alias_names {
        let stored =
            spec.functions[0].aliases.iter().find(|a| a.name == alias).unwrap().additional_version_weights["v2"];
        assert_eq!(stored, last[alias], "alias {alias}");
    }
    assert_eq!(split(&gw.client, "/hello-c", &[], 100).await, counts(&[("v1", 70), ("v2", 30)]));

    // The watcher sees the gateway's own writes and must not reload them again.
    let settled = generation(&gw);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(generation(&gw), settled, "the watcher reloaded the gateway's own writes");
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_and_an_api_change_both_land() {
    let upstreams = backends(&["latest", "v1", "v2", "v3", "v4"]).await;
    let gw = Gateway::start_with(&render(WITH_PROD, &upstreams), |config| {
        config.admin.tokens = vec![Secret::new(TOKEN)];
        // Long enough that the API change comes before the watcher's reload.
        config.reload.debounce = Duration::from_millis(600);
    })
    .await;
    let api = Api::of(&gw);
    let edited = WITH_PROD.replace(
        "      - { version: v3, upstream: \"@v3@\" }\n",
        "      - { version: v3, upstream: \"@v3@\" }\n      - { version: v4, upstream: \"@v4@\", description: by hand }\n",
    );
    save_by_rename(&gw.routes_path, &render(&edited, &upstreams));

    // At once: an API change that needs the hand edit (v4 exists only there).
    let body = json!({ "version": "v1", "additional_version_weights": { "v4": 25 } });
    let answer = api.fg(Method::PUT, &functions("hello", None, "/aliases/prod"), Some(body)).await;
    expect(&answer, StatusCode::OK);
    assert_disk_matches_memory(&gw);
    let check = |gw: &Gateway| {
        let spec = memory(gw);
        let hello = &spec.functions[0];
        let v4 = hello.versions.iter().find(|v| v.version == "v4").expect("the hand-edited version is kept");
        assert_eq!(v4.description.as_deref(), Some("by hand"));
        assert_eq!(hello.aliases[0].additional_version_weights.get("v4"), Some(&25));
    };
    check(&gw);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 75), ("v4", 25)]));

    // The watcher's reload comes later and finds nothing new.
    let settled = generation(&gw);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(generation(&gw), settled);
    check(&gw);
    assert_disk_matches_memory(&gw);
}

/// Makes writes into a directory fail for as long as it lives, undone on drop (panics
/// included). `chattr +i` is the real thing (root ignores permissions, not the immutable
/// flag); where it is not permitted (a container without CAP_LINUX_IMMUTABLE), directories
/// squat on the temp-file names the gateway would create, so its `create_new` fails.
enum WriteBlock {
    Immutable(PathBuf),
    Decoys(Vec<PathBuf>),
}

impl WriteBlock {
    fn on(dir: &Path, file_name: &str) -> WriteBlock {
        let chattr = std::process::Command::new("chattr").arg("+i").arg(dir).output();
        if chattr.is_ok_and(|out| out.status.success()) {
            let block = WriteBlock::Immutable(dir.to_owned());
            let probe = dir.join("probe");
            if std::fs::File::create(&probe).is_err() {
                return block;
            }
            let _ = std::fs::remove_file(&probe);
        }
        eprintln!("chattr +i does not work on {}: falling back to decoy temp names", dir.display());
        let decoys: Vec<PathBuf> =
            (0..4096).map(|n| dir.join(format!(".{file_name}.{}.{n}.tmp", std::process::id()))).collect();
        for decoy in &decoys {
            std::fs::create_dir(decoy).unwrap();
        }
        WriteBlock::Decoys(decoys)
    }

    fn is_immutable(&self) -> bool {
        matches!(self, WriteBlock::Immutable(_))
    }
}

impl Drop for WriteBlock {
    fn drop(&mut self) {
        match self {
            WriteBlock::Immutable(dir) => {
                let _ = std::process::Command::new("chattr").arg("-i").arg(&*dir).status();
            }
            WriteBlock::Decoys(decoys) => {
                for decoy in decoys.iter() {
                    let _ = std::fs::remove_dir(decoy);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_is_a_500_and_memory_keeps_agreeing_with_disk() {
    let template = format!(
        "{WITH_PROD}  - name: edge\n    upstream: \"@latest@\"\n    versions:\n      - {{ version: \"{OLD}\", upstream: \"@v1@\" }}\n"
    );
    let (gw, _up) = start(&template, VERSION_BACKENDS).await;
    let api = Api::of(&gw);
    let prod = functions("hello", None, "/aliases/prod");
    let on_disk = std::fs::read_to_string(&gw.routes_path).unwrap();
    let spec = memory(&gw);
    let before = generation(&gw);

    let guard = WriteBlock::on(gw.dir.path(), "routes.yaml");
    let body = json!({ "version": "v1", "additional_version_weights": { "v2": 40 } });
    fg_error(&api.fg(Method::PUT, &prod, Some(body.clone())).await, StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500");
    let publish = api.fg(Method::POST, &functions("hello", None, "/versions"), Some(json!({ "version": "v9" }))).await;
    fg_error(&publish, StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500");
    let trigger = api.fg(Method::POST, &triggers("hello", Some("v2"), ""), Some(apig(None, None))).await;
    fg_error(&trigger, StatusCode::INTERNAL_SERVER_ERROR, "FSS.0500");
    let versions = code_versions(&[(OLD, 100)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "production"), ("Name", "edge"), ("Strategy", "percentage")];
    esa_error(
        &api.esa("CreateRoutineCodeDeployment", &params).await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
    );

    // Nothing changed: not the file, not memory, not the data plane.
    assert_eq!(std::fs::read_to_string(&gw.routes_path).unwrap(), on_disk);
    assert_eq!(memory(&gw), spec);
    assert_eq!(generation(&gw), before);
    assert_disk_matches_memory(&gw);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 20).await, counts(&[("v1", 20)]));
    assert_eq!(gw.client.get("/hello-v2").await.status, StatusCode::NOT_FOUND);
    if guard.is_immutable() {
        let leftovers: Vec<_> = std::fs::read_dir(gw.dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 1, "temp files left behind: {leftovers:?}");
    }

    // Writable again: the same change goes through.
    drop(guard);
    expect(&api.fg(Method::PUT, &prod, Some(body)).await, StatusCode::OK);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 100).await, counts(&[("v1", 60), ("v2", 40)]));
    assert_disk_matches_memory(&gw);
}
