//! ESA routine deployments: a deployment sets the environment's alias and serves on its default trigger.

use super::*;

// === ESA routine deployments ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn esa_deployments_set_the_env_alias_and_serve_on_the_default_trigger() {
    let (gw, _up) = start(ROUTINE, ROUTINE_BACKENDS).await;
    let api = Api::of(&gw);

    let versions = code_versions(&[(OLD, 90), (NEW, 10)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "production"), ("Name", "edge"), ("Strategy", "percentage")];
    let deployed = expect(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
    assert!(!deployed["RequestId"].as_str().unwrap_or_default().is_empty(), "{deployed}");
    assert_eq!(deployed["Strategy"], "percentage");
    let production_id = deployed["DeploymentId"].as_str().expect("DeploymentId").to_owned();
    assert!(!production_id.is_empty());
    assert_eq!(
        deployed["CodeVersions"],
        json!([{ "CodeVersion": OLD, "Percentage": 90 }, { "CodeVersion": NEW, "Percentage": 10 }])
    );
    assert_eq!(split(&gw.client, "/edge-production", &[], 100).await, counts(&[(OLD, 90), (NEW, 10)]));

    let alias =
        expect(&api.fg(Method::GET, &functions("edge", None, "/aliases/production"), None).await, StatusCode::OK);
    assert_eq!(alias["version"], OLD);
    assert_eq!(alias["additional_version_weights"], json!({ NEW: 10 }));

    // `Action` as a query parameter; the split is kept in the order it was asked for (the
    // first version listed is the alias's own).
    let versions = code_versions(&[(NEW, 30), (NEWEST, 70)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "staging"), ("Name", "edge"), ("Strategy", "percentage")];
    let staging = expect(&api.esa_query("Action=CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
    assert_eq!(
        staging["CodeVersions"],
        json!([{ "CodeVersion": NEW, "Percentage": 30 }, { "CodeVersion": NEWEST, "Percentage": 70 }])
    );
    let staging_id = staging["DeploymentId"].as_str().expect("DeploymentId").to_owned();
    assert_eq!(split(&gw.client, "/edge-staging", &[], 100).await, counts(&[(NEWEST, 70), (NEW, 30)]));

    let list = expect(&api.fg(Method::GET, &triggers("edge", None, ""), None).await, StatusCode::OK);
    let mut paths: Vec<String> =
        list.as_array().unwrap().iter().map(|t| t["event_data"]["path"].as_str().unwrap().to_owned()).collect();
    paths.sort();
    assert_eq!(paths, ["/edge-production", "/edge-staging"]);

    // Everything in the query works too.
    let routine = expect(&api.esa_query("Action=GetRoutine&Name=edge", &[]).await, StatusCode::OK);
    let envs = routine["Envs"].as_array().expect("Envs");
    let env = |name: &str| envs.iter().find(|e| e["Env"] == name).unwrap_or_else(|| panic!("no {name} in {routine}"));
    assert_eq!(env("production")["CodeDeploy"]["DeployId"], production_id.as_str());
    assert_eq!(env("production")["CodeDeploy"]["Strategy"], "percentage");
    let shares = |name: &str| -> Vec<(String, i64)> {
        env(name)["CodeDeploy"]["CodeVersions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["CodeVersion"].as_str().unwrap().to_owned(), v["Percentage"].as_i64().unwrap()))
            .collect()
    };
    assert_eq!(shares("production"), [(OLD.to_owned(), 90), (NEW.to_owned(), 10)]);
    assert_eq!(shares("staging"), [(NEW.to_owned(), 30), (NEWEST.to_owned(), 70)], "in request order");
    assert_eq!(env("staging")["CodeDeploy"]["DeployId"], staging_id.as_str());
    assert_eq!(env("production")["CodeDeploy"]["CodeVersions"][0]["Description"], "old code");

    // A new deployment to an env replaces its split; the trigger stays the one trigger.
    let versions = code_versions(&[(NEWEST, 100)]);
    let params =
        [("CodeVersions", versions.as_str()), ("Env", "production"), ("Name", "edge"), ("Strategy", "percentage")];
    let redeployed = expect(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
    assert_eq!(split(&gw.client, "/edge-production", &[], 20).await, counts(&[(NEWEST, 20)]));
    let routine = expect(&api.esa("GetRoutine", &[("Name", "edge")]).await, StatusCode::OK);
    let production = routine["Envs"].as_array().unwrap().iter().find(|e| e["Env"] == "production").cloned().unwrap();
    assert_eq!(production["CodeDeploy"]["DeployId"], redeployed["DeploymentId"]);
    let list = expect(&api.fg(Method::GET, &triggers("edge", None, ""), None).await, StatusCode::OK);
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");

    let all = expect(&api.esa("ListRoutineCodeVersions", &[("Name", "edge")]).await, StatusCode::OK);
    assert_eq!(all["TotalCount"], 3);
    assert_eq!(names(&all["CodeVersions"], "CodeVersion"), [OLD, NEW, NEWEST]);
    assert_eq!(all["CodeVersions"][1]["CodeDescription"], "new code");
    let params = [("Name", "edge"), ("PageNumber", "2"), ("PageSize", "2")];
    let page = expect(&api.esa("ListRoutineCodeVersions", &params).await, StatusCode::OK);
    assert_eq!(
        (page["PageNumber"].as_u64(), page["PageSize"].as_u64(), page["TotalCount"].as_u64()),
        (Some(2), Some(2), Some(3))
    );
    assert_eq!(names(&page["CodeVersions"], "CodeVersion"), [NEWEST]);
    let params = [("Name", "edge"), ("SearchKeyWord", "new code")];
    let found = expect(&api.esa("ListRoutineCodeVersions", &params).await, StatusCode::OK);
    assert_eq!(names(&found["CodeVersions"], "CodeVersion"), [NEW]);
    assert_disk_matches_memory(&gw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_action_is_alibabas_404_invalid_action_not_found() {
    let (gw, _up) = start(ROUTINE, ROUTINE_BACKENDS).await;
    let api = Api::of(&gw);
    let message = esa_error(
        &api.esa("DeleteEverything", &[("Name", "edge")]).await,
        StatusCode::NOT_FOUND,
        "InvalidAction.NotFound",
    );
    assert!(message.contains("DeleteEverything"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_ids_never_repeat_and_count_up_however_fast_deployments_come() {
    let (gw, _up) = start(ROUTINE, ROUTINE_BACKENDS).await;
    let api = Api::of(&gw);
    let mut ids = Vec::new();
    for round in 0..20 {
        let shares = if round % 2 == 0 { [(OLD, 90), (NEW, 10)] } else { [(OLD, 80), (NEW, 20)] };
        let versions = code_versions(&shares);
        let params =
            [("CodeVersions", versions.as_str()), ("Env", "production"), ("Name", "edge"), ("Strategy", "percentage")];
        let deployed = expect(&api.esa("CreateRoutineCodeDeployment", &params).await, StatusCode::OK);
        let id: u64 = deployed["DeploymentId"].as_str().expect("DeploymentId").parse().expect("a number");
        ids.push(id);
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "strictly increasing: {ids:?}");
}
