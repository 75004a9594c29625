//! ESA's own release flow on graygate's model: create and list routines, commit the
//! staging code as a code version, deploy and publish it, inspect and delete code
//! versions, and environments whose header rules a percentage deployment cannot carry.

use super::*;

fn ok(answer: &Answer) -> Value {
    expect(answer, StatusCode::OK)
}

fn is_rfc3339(text: &str) -> bool {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_deploy_publish_and_delete_code_versions() {
    let (gw, _up) = start(ROUTINE, ROUTINE_BACKENDS).await;
    let api = Api::of(&gw);
    let bad = StatusCode::BAD_REQUEST;

    let committed = ok(&api.esa("CommitRoutineStagingCode", &[("Name", "edge"), ("CodeDescription", "fourth")]).await);
    let code = committed["CodeVersion"].as_str().expect("CodeVersion").to_owned();
    assert!(code.parse::<u64>().expect("numeric") > NEWEST.parse::<u64>().expect("numeric"), "{code}");
    let again = api.esa("CommitRoutineStagingCode", &[("Name", "edge")]).await;
    esa_error(&again, bad, "InvalidParameter");

    let staging = code_versions(&[(&code, 10), (OLD, 90)]);
    let params = [("CodeVersions", staging.as_str()), ("Env", "staging"), ("Name", "edge"), ("Strategy", "percentage")];
    ok(&api.esa("CreateRoutineCodeDeployment", &params).await);
    assert_eq!(split(&gw.client, "/edge-staging", &[], 100).await, counts(&[(&code, 10), (OLD, 90)]));
    let refused = api.esa("DeleteRoutineCodeVersion", &[("Name", "edge"), ("CodeVersion", OLD)]).await;
    esa_error(&refused, bad, "DependedByOthers");

    let published = ok(&api
        .esa("PublishRoutineCodeVersion", &[("Name", "edge"), ("CodeVersion", &code), ("Env", "production")])
        .await);
    assert_eq!(published["CodeVersion"], code.as_str());
    assert_eq!(split(&gw.client, "/edge-production", &[], 20).await, counts(&[(&code, 20)]));

    let info = ok(&api.esa("GetRoutineCodeVersionInfo", &[("Name", "edge"), ("CodeVersion", &code)]).await);
    assert_eq!(info["CodeDescription"], "fourth");
    assert!(is_rfc3339(info["CreateTime"].as_str().unwrap_or_default()), "{info}");
    let extra: Value = serde_json::from_str(info["ExtraInfo"].as_str().expect("ExtraInfo")).expect("JSON");
    let url = extra["CodeUrl"].as_str().expect("CodeUrl").to_owned();
    assert_eq!(extra["Digest"], hex(&Sha256::digest(url.as_bytes())).as_str());
    let unknown = api.esa("GetRoutineCodeVersionInfo", &[("Name", "edge"), ("CodeVersion", "1")]).await;
    esa_error(&unknown, bad, "ParameterNotExist");

    let listed = ok(&api.esa("ListRoutineCodeVersions", &[("Name", "edge")]).await);
    let env_of = |version: &str| {
        listed["CodeVersions"].as_array().unwrap().iter().find(|v| v["CodeVersion"] == version).unwrap()["DeployEnv"]
            .clone()
    };
    assert_eq!(env_of(&code), "staging,production");
    assert_eq!(env_of(OLD), "staging");
    assert_eq!(env_of(NEWEST), "");

    let routine = ok(&api.esa("GetRoutine", &[("Name", "edge")]).await);
    for env in routine["Envs"].as_array().expect("Envs") {
        assert!(is_rfc3339(env["CodeDeploy"]["CreationTime"].as_str().unwrap_or_default()), "{env}");
    }

    ok(&api.esa("DeleteRoutineCodeVersion", &[("Name", "edge"), ("CodeVersion", NEWEST)]).await);
    let gone = api.esa("DeleteRoutineCodeVersion", &[("Name", "edge"), ("CodeVersion", NEWEST)]).await;
    esa_error(&gone, bad, "ParameterNotExist");
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_env_with_header_rules_is_shown_as_such_and_never_loses_them_to_a_deployment() {
    let (gw, _up) = start(ROUTINE, ROUTINE_BACKENDS).await;
    let api = Api::of(&gw);
    let first = code_versions(&[(OLD, 100)]);
    let params = [("CodeVersions", first.as_str()), ("Env", "staging"), ("Name", "edge"), ("Strategy", "percentage")];
    ok(&api.esa("CreateRoutineCodeDeployment", &params).await);
    let rules = json!({
        "version": OLD,
        "additional_version_strategy": { NEW: { "combine_type": "and", "rules": [
            { "rule_type": "Header", "param": "x-tester", "op": "=", "value": "yes" }
        ] } },
    });
    let alias = functions("edge", None, "/aliases/staging");
    ok(&api.fg(Method::PUT, &alias, Some(rules.clone())).await);

    let routine = ok(&api.esa("GetRoutine", &[("Name", "edge")]).await);
    let staging = &routine["Envs"][0]["CodeDeploy"];
    assert_eq!(staging["Strategy"], "rules+percentage", "{routine}");
    let listed: Vec<(String, i64)> = staging["CodeVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["CodeVersion"].as_str().unwrap().to_owned(), v["Percentage"].as_i64().unwrap()))
        .collect();
    assert_eq!(listed, [(OLD.to_owned(), 100), (NEW.to_owned(), 0)]);
    assert!(staging["CodeVersions"][1]["Description"].as_str().unwrap_or_default().contains("x-tester"), "{staging}");

    let next = code_versions(&[(NEWEST, 100)]);
    let params = [("CodeVersions", next.as_str()), ("Env", "staging"), ("Name", "edge"), ("Strategy", "percentage")];
    let message =
        esa_error(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::BAD_REQUEST, "InvalidParameter");
    assert!(message.contains("header rules"), "{message}");
    let kept = ok(&api.fg(Method::GET, &alias, None).await);
    assert_eq!(kept["additional_version_strategy"], rules["additional_version_strategy"]);
    assert_eq!(split(&gw.client, "/edge-staging", &[("x-tester", "yes")], 10).await, counts(&[(NEW, 10)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routines_are_created_listed_and_deleted_when_nothing_depends_on_them() {
    let (gw, _up) = start(ROUTINE, ROUTINE_BACKENDS).await;
    let api = Api::of(&gw);
    let bad = StatusCode::BAD_REQUEST;
    ok(&api.esa("CreateRoutine", &[("Name", "fresh"), ("Description", "no code yet")]).await);
    esa_error(&api.esa("CreateRoutine", &[("Name", "fresh")]).await, bad, "RoutineNameAlreadyExist");
    let listed = ok(&api.esa("ListUserRoutines", &[("SearchKeyWord", "fre")]).await);
    assert_eq!(listed["TotalCount"], 1);
    assert_eq!(listed["Routines"][0]["RoutineName"], "fresh");
    assert_eq!(listed["Routines"][0]["Description"], "no code yet");
    let all = ok(&api.esa("ListUserRoutines", &[]).await);
    assert_eq!(all["TotalCount"], 2);

    // Nothing to commit until the routine has staging code.
    let message = esa_error(&api.esa("CommitRoutineStagingCode", &[("Name", "fresh")]).await, bad, "InvalidParameter");
    assert!(message.contains("no code"), "{message}");
    ok(&api.esa("DeleteRoutine", &[("Name", "fresh")]).await);
    esa_error(&api.esa("GetRoutine", &[("Name", "fresh")]).await, bad, "RoutineNotExist");

    let only = code_versions(&[(OLD, 100)]);
    let params = [("CodeVersions", only.as_str()), ("Env", "production"), ("Name", "edge"), ("Strategy", "percentage")];
    ok(&api.esa("CreateRoutineCodeDeployment", &params).await);
    esa_error(&api.esa("DeleteRoutine", &[("Name", "edge")]).await, bad, "DependedByOthers");
    assert_disk_matches_memory(&gw);
}
