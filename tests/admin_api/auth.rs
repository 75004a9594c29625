//! Authentication: tokens, Huawei SDK-HMAC-SHA256 and Alibaba ACS3-HMAC-SHA256 signatures, and open admin listeners.

use super::*;

// === authentication ===

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_the_api_and_every_refusal_looks_the_same() {
    let upstreams = backends(VERSION_BACKENDS).await;
    let gw = Gateway::start_with(&render(WITH_PROD, &upstreams), |config| {
        config.admin.tokens = vec![Secret::new(TOKEN), Secret::new("second-token")];
    })
    .await;
    let url = gw.admin_url(&functions("hello", None, "/aliases"));
    let get = |headers: &'static [(&'static str, &'static str)]| {
        let (client, url) = (gw.client.clone(), url.clone());
        async move { client.send_to(&url, Method::GET, headers, Bytes::new()).await }
    };

    assert_eq!(get(&[("x-auth-token", TOKEN)]).await.status, StatusCode::OK);
    assert_eq!(get(&[("x-auth-token", "second-token")]).await.status, StatusCode::OK);

    let missing = get(&[]).await;
    let wrong = get(&[("x-auth-token", "wrong")]).await;
    let prefix = get(&[("x-auth-token", "graygate-test-token-000")]).await;
    let longer = get(&[("x-auth-token", "graygate-test-token-00011")]).await;
    let basic = get(&[("authorization", "Basic dXNlcjpwYXNz")]).await;
    fg_error(&missing, StatusCode::UNAUTHORIZED, "APIG.0301");
    for refused in [&wrong, &prefix, &longer, &basic] {
        assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
        assert_eq!(refused.body, missing.body, "a refusal says what was wrong");
    }

    // A refused change changes nothing.
    let before = generation(&gw);
    let body = Bytes::from(json!({ "version": "v2" }).to_string());
    let prod = gw.admin_url(&functions("hello", None, "/aliases/prod"));
    let refused = gw.client.send_to(&prod, Method::PUT, &[("x-auth-token", "wrong")], body).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert_eq!(refused.body, missing.body);
    assert_eq!(generation(&gw), before);
    assert_eq!(split(&gw.client, "/hello-prod", &[], 5).await, counts(&[("v1", 5)]));

    // ESA answers in its own shape, alike apart from the request id.
    let esa = |token: Option<&'static str>| {
        let (client, url) = (gw.client.clone(), gw.admin_url("/"));
        async move {
            let mut headers =
                vec![("x-acs-action", "GetRoutine"), ("content-type", "application/x-www-form-urlencoded")];
            if let Some(token) = token {
                headers.push(("x-auth-token", token));
            }
            client.send_to(&url, Method::POST, &headers, Bytes::from_static(b"Name=hello")).await
        }
    };
    assert_eq!(esa(Some(TOKEN)).await.status, StatusCode::OK);
    let (no_token, bad_token) = (esa(None).await, esa(Some("wrong")).await);
    let code = no_token.json()["Code"].as_str().unwrap_or_default().to_owned();
    assert!(!code.is_empty(), "{}", no_token.text());
    let m1 = esa_error(&no_token, StatusCode::UNAUTHORIZED, &code);
    let m2 = esa_error(&bad_token, StatusCode::UNAUTHORIZED, &code);
    assert_eq!(m1, m2);

    // Metrics and probes stay open.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let answer = gw.client.send_to(&gw.admin_url(path), Method::GET, &[], Bytes::new()).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}: {}", answer.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_loopback_admin_listener_needs_credentials() {
    let upstreams = backends(VERSION_BACKENDS).await;
    let dir = tempfile::tempdir().unwrap();
    let routes_path = dir.path().join("routes.yaml");
    std::fs::write(&routes_path, render(ROUTES, &upstreams)).unwrap();
    let anywhere: SocketAddr = "0.0.0.0:0".parse().unwrap();

    let config = ServerConfig::with_defaults(support::local(), anywhere, routes_path.clone()).unwrap();
    match App::start(config).await {
        Err(StartError::OpenAdmin(addr)) => assert_eq!(addr, anywhere),
        Err(other) => panic!("refused for the wrong reason: {other}"),
        Ok(app) => {
            app.shutdown().await;
            panic!("an open admin listener without credentials started");
        }
    }

    // With a token it starts, and the token is required.
    let mut config = ServerConfig::with_defaults(support::local(), anywhere, routes_path).unwrap();
    config.admin.tokens = vec![Secret::new(TOKEN)];
    let app = App::start(config).await.unwrap_or_else(|e| panic!("does not start with a token: {e}"));
    let admin = format!("http://127.0.0.1:{}{}", app.admin_addr().port(), functions("hello", None, "/aliases"));
    let client = TestClient::new(app.data_addr());
    assert_eq!(client.send_to(&admin, Method::GET, &[], Bytes::new()).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        client.send_to(&admin, Method::GET, &[("x-auth-token", TOKEN)], Bytes::new()).await.status,
        StatusCode::OK
    );
    tokio::time::timeout(support::PATIENCE, app.shutdown()).await.unwrap();
}

// --- request signing, as the vendors' SDKs do it (REPORT.md 1.3 and 2.3) ---

const HW_AK: &str = "HPUAEXAMPLEAK0000001";
const HW_SK: &str = "exampleSecretKey0123456789abcdefghijklmn";
const ALI_AK: &str = "LTAI5tEXAMPLEAccessKey01";
const ALI_SK: &str = "ExampleAccessKeySecret0123456789ab";

fn hex_sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hmac_hex(key: &str, message: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(message.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Decodes a wire query into sorted pairs and re-encodes them RFC 3986 (`plus_is_space`
/// for Alibaba's form-encoded wire query).
fn canonical_query(query: &str, plus_is_space: bool) -> String {
    let decode = |s: &str| {
        let s = if plus_is_space { s.replace('+', " ") } else { s.to_owned() };
        percent_decode_str(&s).decode_utf8_lossy().into_owned()
    };
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect();
    pairs.sort();
    pairs.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&")
}

/// `name:value\n` per header (names already lower-case and sorted) and the signed list.
fn canonical_headers(headers: &[(String, String)]) -> (String, String) {
    let text: String = headers.iter().map(|(n, v)| format!("{n}:{}\n", v.trim())).collect();
    let signed = headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(";");
    (text, signed)
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
}

/// Huawei SDK-HMAC-SHA256 over `headers` (lower-case names, sorted, `x-sdk-date` among
/// them): the signed-header list and the signature (REPORT.md 1.3).
fn huawei_signature(
    sk: &str,
    method: &Method,
    path_and_query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (String, String) {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let decoded = percent_decode_str(path).decode_utf8_lossy().into_owned();
    let mut uri = decoded.split('/').map(encode).collect::<Vec<_>>().join("/");
    if !uri.ends_with('/') {
        uri.push('/');
    }
    let (canonical_headers, signed) = canonical_headers(headers);
    let canonical = format!(
        "{method}\n{uri}\n{}\n{canonical_headers}\n{signed}\n{}",
        canonical_query(query, false),
        hex_sha256(body)
    );
    let date = &headers.iter().find(|(n, _)| n == "x-sdk-date").expect("x-sdk-date").1;
    let to_sign = format!("SDK-HMAC-SHA256\n{date}\n{}", hex_sha256(canonical.as_bytes()));
    (signed, hmac_hex(sk, &to_sign))
}

/// The headers of a Huawei SDK call (the signed ones and `authorization`).
fn huawei_sign(
    (ak, sk): (&str, &str),
    method: &Method,
    host: &str,
    path_and_query: &str,
    body: &[u8],
    date: OffsetDateTime,
) -> Vec<(String, String)> {
    let date_text = date.format(format_description!("[year][month][day]T[hour][minute][second]Z")).unwrap();
    let mut headers = owned(&[
        ("content-type", "application/json"),
        ("host", host),
        ("user-agent", "huaweicloud-usdk-python/3.0; graygate-tests"),
        ("x-project-id", PROJECT),
        ("x-sdk-date", date_text.as_str()),
    ]);
    let (signed, signature) = huawei_signature(sk, method, path_and_query, &headers, body);
    headers.push((
        "authorization".into(),
        format!("SDK-HMAC-SHA256 Access={ak}, SignedHeaders={signed}, Signature={signature}"),
    ));
    headers
}

/// Alibaba ACS3-HMAC-SHA256 of `{method} /?{query}` over `headers` (lower-case names, sorted):
/// the signed-header list and the signature (REPORT.md 2.3).
fn acs3_signature(
    sk: &str,
    method: &Method,
    query: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (String, String) {
    let (canonical_headers, signed) = canonical_headers(headers);
    let canonical =
        format!("{method}\n/\n{}\n{canonical_headers}\n{signed}\n{}", canonical_query(query, true), hex_sha256(body));
    let to_sign = format!("ACS3-HMAC-SHA256\n{}", hex_sha256(canonical.as_bytes()));
    (signed, hmac_hex(sk, &to_sign))
}

/// The headers of an ESA SDK call `POST /?{query}` (the signed ones and `authorization`).
fn acs3_sign(
    (ak, sk): (&str, &str),
    host: &str,
    action: &str,
    query: &str,
    body: &[u8],
    date: OffsetDateTime,
) -> Vec<(String, String)> {
    let date_text = date.format(format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).unwrap();
    let nonce = format!("{:032x}", fastrand::u128(..));
    let body_hash = hex_sha256(body);
    let mut headers = owned(&[("accept", "application/json")]);
    if !body.is_empty() {
        headers.extend(owned(&[("content-type", "application/x-www-form-urlencoded")]));
    }
    headers.extend(owned(&[
        ("host", host),
        ("user-agent", "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2"),
        ("x-acs-action", action),
        ("x-acs-content-sha256", body_hash.as_str()),
        ("x-acs-credentials-provider", "static_ak"),
        ("x-acs-date", date_text.as_str()),
        ("x-acs-signature-nonce", nonce.as_str()),
        ("x-acs-version", "2024-09-10"),
    ]));
    let (signed, signature) = acs3_signature(sk, &Method::POST, query, &headers, body);
    headers.push((
        "authorization".into(),
        format!("ACS3-HMAC-SHA256 Credential={ak},SignedHeaders={signed},Signature={signature}"),
    ));
    headers
}

/// The signers above reproduce the SDKs' own signatures (REPORT.md 1.4 and 2.4), so the
/// signed-request tests below do not merely agree with graygate's verifier.
#[test]
fn the_test_signers_match_the_sdks_worked_examples() {
    let path = "/v2/0123456789abcdef0123456789abcdef/fgs/functions/urn%3Afss%3Acn-north-4%3A0123456789abcdef0123456789abcdef%3Afunction%3Adefault%3Amy-func%3Alatest/versions";
    let headers = owned(&[
        ("content-type", "application/json"),
        ("host", "127.0.0.1:8080"),
        ("user-agent", "huaweicloud-usdk-python/3.0"),
        ("x-project-id", PROJECT),
        ("x-sdk-date", "20240501T020304Z"),
    ]);
    let body = br#"{"digest": "abc", "version": "v1", "description": "first"}"#;
    let (signed, signature) = huawei_signature(HW_SK, &Method::POST, path, &headers, body);
    assert_eq!(signed, "content-type;host;user-agent;x-project-id;x-sdk-date");
    assert_eq!(signature, "7bad0b2b332e054b6a2eb7111c1ee0564e89e7805a8a8302c37292fec3f8b5c1");
    let query = format!("{}?a=%E4%B8%AD&flag=true&m=1&m=2&z=a%20b%2Bc%2F~%2A", path.replace("/versions", "/aliases"));
    let (_, signature) = huawei_signature(HW_SK, &Method::GET, &query, &headers, b"");
    assert_eq!(signature, "42ccf681aa92cb50e1d2d564025e8aa50ddb415b78ecda20b3a61afdaa2fc66e");

    let body = "CodeVersions=%5B%7B%22CodeVersion%22%3A%221710120201067203242%22%2C%22Percentage%22%3A90%7D%2C%7B%22CodeVersion%22%3A%221710120201067203243%22%2C%22Percentage%22%3A10%7D%5D&Env=production&Name=my-routine&Strategy=percentage";
    let headers = owned(&[
        ("accept", "application/json"),
        ("content-type", "application/x-www-form-urlencoded"),
        ("host", "127.0.0.1:8080"),
        ("user-agent", "AlibabaCloud (Linux; x86_64) Python/3.11.7 Core/0.4.3 TeaDSL/2"),
        ("x-acs-action", "CreateRoutineCodeDeployment"),
        ("x-acs-content-sha256", "1aa4817971b64c284be66d270875c1caa943524553efeef644f74204f6239432"),
        ("x-acs-credentials-provider", "static_ak"),
        ("x-acs-date", "2024-05-01T02:03:04Z"),
        ("x-acs-signature-nonce", "0123456789abcdef0123456789abcdef"),
        ("x-acs-version", "2024-09-10"),
    ]);
    assert_eq!(hex_sha256(body.as_bytes()), "1aa4817971b64c284be66d270875c1caa943524553efeef644f74204f6239432");
    let (_, signature) = acs3_signature(ALI_SK, &Method::POST, "", &headers, body.as_bytes());
    assert_eq!(signature, "b4994230c3576d6ccb9ad446aff4b77d811f196ae6524157479ca7b446d6daa7");
    // GET with a form-encoded query, no body, no content-type (DescribePurgeTasks).
    let headers: Vec<_> = headers
        .into_iter()
        .filter(|(n, _)| n != "content-type")
        .map(|(n, v)| match n.as_str() {
            "x-acs-action" => (n, "DescribePurgeTasks".to_owned()),
            "x-acs-content-sha256" => (n, hex_sha256(b"")),
            _ => (n, v),
        })
        .collect();
    let query = "SiteId=123&Content=http%3A%2F%2Fa.com%2Fx+y%2Bz~%2A";
    let (signed, signature) = acs3_signature(ALI_SK, &Method::GET, query, &headers, b"");
    assert_eq!(
        signed,
        "accept;host;user-agent;x-acs-action;x-acs-content-sha256;x-acs-credentials-provider;x-acs-date;x-acs-signature-nonce;x-acs-version"
    );
    assert_eq!(signature, "d5c69b135fb97805b770f9f7b0e7adc0e5e4425c8d403117d5f6752262aca763");
}

fn pairs(headers: &[(String, String)]) -> Vec<(&str, &str)> {
    headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect()
}

fn with_header(headers: &[(String, String)], name: &str, value: &str) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.clone(), if n == name { value.to_owned() } else { v.clone() })).collect()
}

async fn start_with_keys(template: &str, names: &[&str]) -> Gateway {
    let upstreams = backends(names).await;
    Gateway::start_with(&render(template, &upstreams), |config| {
        config.admin.keys = vec![
            AccessKey { id: HW_AK.into(), secret: Secret::new(HW_SK) },
            AccessKey { id: ALI_AK.into(), secret: Secret::new(ALI_SK) },
        ];
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huawei_signed_requests_are_verified() {
    let gw = start_with_keys(WITH_PROD, VERSION_BACKENDS).await;
    let host = gw.app.admin_addr().to_string();
    let now = OffsetDateTime::now_utc();
    let send = |method: Method, path: String, headers: Vec<(String, String)>, body: &'static str| {
        let (client, url) = (gw.client.clone(), gw.admin_url(&path));
        async move { client.send_to(&url, method, &pairs(&headers), Bytes::from_static(body.as_bytes())).await }
    };
    let aliases = functions("hello", Some("latest"), "/aliases");
    let create = r#"{"name": "signed", "version": "v2", "description": "by \u7b7e\u540d"}"#;
    let tampered = r#"{"name": "tampered", "version": "v2", "description": "by \u7b7e\u540d"}"#;

    // Good: a POST with a body, a GET with a query, a `!alias` URN (`%21` in the path).
    let headers = huawei_sign((HW_AK, HW_SK), &Method::POST, &host, &aliases, create.as_bytes(), now);
    let created = expect(&send(Method::POST, aliases.clone(), headers, create).await, StatusCode::OK);
    assert_eq!(created["description"], "by \u{7b7e}\u{540d}");
    let listing = format!("{}?marker=0&maxitems=50", functions("hello", Some("latest"), "/versions"));
    let headers = huawei_sign((HW_AK, HW_SK), &Method::GET, &host, &listing, b"", now);
    assert_eq!(expect(&send(Method::GET, listing.clone(), headers, "").await, StatusCode::OK)["count"], 4);
    let by_alias = functions("hello", Some("!signed"), "/aliases/signed");
    let headers = huawei_sign((HW_AK, HW_SK), &Method::GET, &host, &by_alias, b"", now);
    assert_eq!(expect(&send(Method::GET, by_alias, headers, "").await, StatusCode::OK)["version"], "v2");
    // Within the allowed skew.
    let headers = huawei_sign((HW_AK, HW_SK), &Method::GET, &host, &listing, b"", now - time::Duration::minutes(5));
    assert_eq!(send(Method::GET, listing.clone(), headers, "").await.status, StatusCode::OK);

    // Refused, all with the same body: wrong secret, tampered body, skewed date (both
    // ways), unknown key, a tampered query.
    let before = generation(&gw);
    let mut refusals = Vec::new();
    let headers = huawei_sign((HW_AK, "not-the-secret"), &Method::POST, &host, &aliases, tampered.as_bytes(), now);
    refusals.push(send(Method::POST, aliases.clone(), headers, tampered).await);
    let headers = huawei_sign((HW_AK, HW_SK), &Method::POST, &host, &aliases, create.as_bytes(), now);
    refusals.push(send(Method::POST, aliases.clone(), headers, tampered).await);
    for skew in [time::Duration::minutes(-20), time::Duration::minutes(20)] {
        let headers = huawei_sign((HW_AK, HW_SK), &Method::POST, &host, &aliases, tampered.as_bytes(), now + skew);
        refusals.push(send(Method::POST, aliases.clone(), headers, tampered).await);
    }
    let headers =
        huawei_sign(("HPUAUNKNOWNKEY000000", HW_SK), &Method::POST, &host, &aliases, tampered.as_bytes(), now);
    refusals.push(send(Method::POST, aliases.clone(), headers, tampered).await);
    let headers = huawei_sign((HW_AK, HW_SK), &Method::GET, &host, &listing, b"", now);
    refusals.push(send(Method::GET, listing.replace("maxitems=50", "maxitems=1"), headers, "").await);
    let reference = refusals[0].body.clone();
    for (i, refused) in refusals.iter().enumerate() {
        fg_error(refused, StatusCode::UNAUTHORIZED, "APIG.0301");
        assert_eq!(refused.body, reference, "refusal {i} differs");
    }
    assert_eq!(generation(&gw), before, "a refused request changed the routes");
    let spec = memory(&gw);
    assert!(!spec.functions[0].aliases.iter().any(|a| a.name == "tampered"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alibaba_signed_requests_are_verified() {
    let gw = start_with_keys(ROUTINE, ROUTINE_BACKENDS).await;
    let host = gw.app.admin_addr().to_string();
    let now = OffsetDateTime::now_utc();
    let send = |query: &'static str, headers: Vec<(String, String)>, body: String| {
        let (client, url) = (gw.client.clone(), gw.admin_url(&format!("/{query}")));
        async move { client.send_to(&url, Method::POST, &pairs(&headers), Bytes::from(body)).await }
    };
    let deploy = |versions: &[(&str, i64)]| {
        let versions = code_versions(versions);
        form(&[
            ("CodeVersions", versions.as_str()),
            ("Env", "production"),
            ("Name", "edge"),
            ("Strategy", "percentage"),
        ])
    };
    let good = deploy(&[(OLD, 60), (NEW, 40)]);
    let tampered = deploy(&[(NEW, 100)]);
    let action = "CreateRoutineCodeDeployment";

    let headers = acs3_sign((ALI_AK, ALI_SK), &host, action, "", good.as_bytes(), now);
    expect(&send("", headers, good.clone()).await, StatusCode::OK);
    assert_eq!(split(&gw.client, "/edge-production", &[], 100).await, counts(&[(OLD, 60), (NEW, 40)]));
    // A query with a `+` (form-encoded space) is canonicalised as the SDK does.
    let query = "?Name=edge&SearchKeyWord=new+code";
    let headers =
        acs3_sign((ALI_AK, ALI_SK), &host, "ListRoutineCodeVersions", query.trim_start_matches('?'), b"", now);
    let found = expect(&send(query, headers, String::new()).await, StatusCode::OK);
    assert_eq!(names(&found["CodeVersions"], "CodeVersion"), [NEW]);

    // Refused: wrong secret, tampered body (with and without a matching content hash),
    // skewed date, unknown key.
    let before = generation(&gw);
    let mut refusals = Vec::new();
    let headers = acs3_sign((ALI_AK, "not-the-secret"), &host, action, "", tampered.as_bytes(), now);
    refusals.push(send("", headers, tampered.clone()).await);
    let headers = acs3_sign((ALI_AK, ALI_SK), &host, action, "", good.as_bytes(), now);
    refusals.push(send("", headers.clone(), tampered.clone()).await);
    let rehashed = with_header(&headers, "x-acs-content-sha256", &hex_sha256(tampered.as_bytes()));
    refusals.push(send("", rehashed, tampered.clone()).await);
    for skew in [time::Duration::minutes(-20), time::Duration::minutes(20)] {
        let headers = acs3_sign((ALI_AK, ALI_SK), &host, action, "", tampered.as_bytes(), now + skew);
        refusals.push(send("", headers, tampered.clone()).await);
    }
    let headers = acs3_sign(("LTAI5tUNKNOWNAccessKey", ALI_SK), &host, action, "", tampered.as_bytes(), now);
    refusals.push(send("", headers, tampered.clone()).await);
    // Alibaba's own codes and statuses, which its SDK and its users recognise.
    let expected = [
        (StatusCode::BAD_REQUEST, "SignatureDoesNotMatch"),
        (StatusCode::BAD_REQUEST, "SignatureDoesNotMatch"),
        (StatusCode::BAD_REQUEST, "SignatureDoesNotMatch"),
        (StatusCode::BAD_REQUEST, "InvalidTimeStamp.Expired"),
        (StatusCode::BAD_REQUEST, "InvalidTimeStamp.Expired"),
        (StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound"),
    ];
    assert_eq!(refusals.len(), expected.len());
    for (refused, (status, code)) in refusals.iter().zip(expected) {
        let message = esa_error(refused, status, code);
        assert!(!message.is_empty() && !message.contains(ALI_SK), "{message}");
    }
    assert_eq!(generation(&gw), before, "a refused request changed the routes");
    assert_eq!(split(&gw.client, "/edge-production", &[], 100).await, counts(&[(OLD, 60), (NEW, 40)]));
}
