//! Functions as a whole: a pipeline bootstraps, finds, configures and deletes them.

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_is_created_served_configured_listed_and_deleted() {
    let (gw, up) = start(ROUTES, &["latest", "v1", "v2", "v3", "fresh"]).await;
    let api = Api::of(&gw);
    let bad = StatusCode::BAD_REQUEST;
    let code_url = format!("http://{}", up["fresh"]);
    let create = |extra: Value| {
        let mut body = json!({
            "func_name": "shop", "package": "retail", "runtime": "http", "code_type": "url",
            "code_url": code_url, "timeout": 10, "handler": "index.handler", "memory_size": 128,
        });
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        body
    };
    let collection = format!("/v2/{PROJECT}/fgs/functions");
    for (extra, why) in [
        (json!({ "code_type": "zip" }), "code package"),
        (json!({ "code_url": "http://127.0.0.1:1/code.zip" }), "code package"),
        (json!({ "runtime": "Python3.9" }), "runtime"),
        (json!({ "timeout": 1 }), "timeout"),
    ] {
        let message = fg_error(&api.fg(Method::POST, &collection, Some(create(extra))).await, bad, "FSS.0400");
        assert!(message.contains(why), "{message}");
    }
    let created = expect(&api.fg(Method::POST, &collection, Some(create(json!({})))).await, StatusCode::OK);
    assert_eq!(created["func_urn"], format!("urn:fss:{REGION}:{PROJECT}:function:retail:shop:latest"));
    assert_eq!(created["digest"], hex(&Sha256::digest(code_url.as_bytes())).as_str());
    let again = api.fg(Method::POST, &collection, Some(create(json!({})))).await;
    fg_error(&again, StatusCode::CONFLICT, "FSS.1061");

    let urn = format!("urn:fss:{REGION}:{PROJECT}:function:retail:shop");
    let enc = |urn: &str| utf8_percent_encode(urn, NON_ALPHANUMERIC).to_string();
    let trigger = format!("/v2/{PROJECT}/fgs/triggers/{}", enc(&urn));
    expect(&api.fg(Method::POST, &trigger, Some(apig(None, None))).await, StatusCode::CREATED);
    assert_eq!(served_by(&gw.client.get("/shop-latest").await), "fresh");

    let config = format!("/v2/{PROJECT}/fgs/functions/{}/config", enc(&urn));
    let shown = expect(&api.fg(Method::GET, &config, None).await, StatusCode::OK);
    assert_eq!((shown["timeout"].as_u64(), shown["code_url"].as_str()), (Some(10), Some(code_url.as_str())));
    let changed = json!({ "func_name": "shop", "timeout": 5, "description": "the shop" });
    expect(&api.fg(Method::PUT, &config, Some(changed)).await, StatusCode::OK);
    let shown = expect(&api.fg(Method::GET, &config, None).await, StatusCode::OK);
    assert_eq!((shown["timeout"].as_u64(), shown["description"].as_str()), (Some(5), Some("the shop")));
    fg_error(&api.fg(Method::PUT, &config, Some(json!({ "timeout": 1000 }))).await, bad, "FSS.0400");
    fg_error(&api.fg(Method::PUT, &config, Some(json!({ "func_name": "other" }))).await, bad, "FSS.0400");
    let code = format!("/v2/{PROJECT}/fgs/functions/{}/code", enc(&urn));
    let shown = expect(&api.fg(Method::GET, &code, None).await, StatusCode::OK);
    assert_eq!(shown["code_url"], code_url.as_str());
    assert_eq!(shown["digest"], created["digest"]);

    let listed = expect(&api.fg(Method::GET, &format!("{collection}?package_name=retail"), None).await, StatusCode::OK);
    assert_eq!((listed["count"].as_u64(), listed["functions"][0]["func_name"].as_str()), (Some(1), Some("shop")));
    let by_name = expect(&api.fg(Method::GET, &format!("{collection}?func_name=hel"), None).await, StatusCode::OK);
    assert_eq!(names(&by_name["functions"], "func_name"), ["hello"]);
    let page = expect(&api.fg(Method::GET, &format!("{collection}?marker=1&maxitems=1"), None).await, StatusCode::OK);
    assert_eq!((page["count"].as_u64(), page["next_marker"].as_u64()), (Some(2), Some(2)));
    assert_eq!(names(&page["functions"], "func_name"), ["shop"]);

    // Unqualified DELETE is the function: refused while a trigger routes to it.
    let function = format!("/v2/{PROJECT}/fgs/functions/{}", enc(&urn));
    fg_error(&api.fg(Method::DELETE, &function, None).await, StatusCode::FORBIDDEN, "FSS.1095");
    assert_eq!(api.fg(Method::DELETE, &trigger, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.fg(Method::DELETE, &function, None).await.status, StatusCode::NO_CONTENT);
    fg_error(&api.fg(Method::GET, &config, None).await, StatusCode::NOT_FOUND, "FSS.1051");
    assert_eq!(gw.client.get("/shop-latest").await.status, StatusCode::NOT_FOUND);
    assert_disk_matches_memory(&gw);
}
