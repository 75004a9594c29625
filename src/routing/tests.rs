use super::*;
use http::HeaderValue;

const ROUTES: &str = r#"
project_id: p1
functions:
  - name: hello
    upstream: http://127.0.0.1:9000
    versions:
      - { version: v1, upstream: "http://127.0.0.1:9001" }
      - { version: v2, upstream: "http://127.0.0.1:9002/base/" }
    aliases:
      - name: prod
        version: v1
        additional_version_weights: { v2: 10 }
      - name: beta
        version: v1
        additional_version_strategy:
          v2: { combine_type: and, rules: [ { rule_type: Header, param: x-user-group, op: in, value: "beta,qa" } ] }
      - name: pinned
        version: v1
        additional_version_weights: { v2: 50 }
        sticky: { cookie: uid }
    triggers:
      - { target: prod }
      - { name: API_hello_beta, path: /shop/hello, target: beta }
      - { target: v1 }
      - { target: latest }
      - { target: pinned }
      - { path: /shop/hello/deep/er, target: v2, req_method: POST }
"#;

fn table() -> RoutingTable {
    let routes = ValidRoutes::parse(ROUTES, "routes.yaml").unwrap_or_else(|e| unreachable!("{e}"));
    compile(Arc::new(routes), 1, None, &Default::default()).unwrap_or_else(|e| unreachable!("{e}"))
}

fn version_of(table: &RoutingTable, path: &str, headers: &HeaderMap) -> String {
    match table.resolve(&Method::GET, path, headers) {
        Ok(resolved) => resolved.version.name.to_string(),
        Err(e) => format!("{e:?}"),
    }
}

#[test]
fn default_trigger_paths_and_longest_match() {
    let t = table();
    let find = |p: &str| t.find_trigger(p).map(|(tr, rest)| (tr.name.to_string(), rest.to_owned()));
    assert_eq!(find("/hello-prod"), Some(("API_helloprod".into(), "".into())));
    assert_eq!(find("/hello-prod/"), Some(("API_helloprod".into(), "/".into())));
    assert_eq!(find("/hello-prod/a/b"), Some(("API_helloprod".into(), "/a/b".into())));
    assert_eq!(find("/hello-v1"), Some(("API_hellov1".into(), "".into())));
    assert_eq!(find("/hello-latest/x"), Some(("API_hellolatest".into(), "/x".into())));
    assert_eq!(find("/shop/hello/deep/er/x"), Some(("API_hellov2".into(), "/x".into())));
    assert_eq!(find("/shop/hello/deep"), Some(("API_hello_beta".into(), "/deep".into())));
    assert_eq!(find("/hello-prodx"), None);
    assert_eq!(find("/shop"), None);
    assert_eq!(find("*"), None);
    assert_eq!(find(""), None);
}

#[test]
fn deep_paths_are_cut_to_the_deepest_trigger() {
    let t = table();
    let deep = format!("/hello-prod{}", "/x".repeat(5000));
    let (trigger, rest) = t.find_trigger(&deep).unwrap_or_else(|| unreachable!());
    assert_eq!(&*trigger.name, "API_helloprod");
    assert_eq!(rest.len(), 10_000);
}

#[test]
fn a_root_trigger_catches_everything_else() {
    let routes = "project_id: p\nfunctions:\n  - name: f\n    upstream: http://127.0.0.1:1\n    triggers: [ { path: /, target: latest }, { name: a, target: latest, path: /a } ]\n";
    let routes = ValidRoutes::parse(routes, "r").unwrap_or_else(|e| unreachable!("{e}"));
    let t = compile(Arc::new(routes), 1, None, &Default::default()).unwrap_or_else(|e| unreachable!("{e}"));
    let rest = |p: &str| t.find_trigger(p).map(|(tr, r)| (tr.path.to_string(), r.to_owned()));
    assert_eq!(rest("/"), Some(("/".into(), "".into())));
    // The same with nothing but the root trigger (the deepest trigger has no segment).
    let only_root = "project_id: p\nfunctions:\n  - name: f\n    upstream: http://127.0.0.1:1\n    triggers: [ { path: /, target: latest } ]\n";
    let only_root = ValidRoutes::parse(only_root, "r").unwrap_or_else(|e| unreachable!("{e}"));
    let t2 = compile(Arc::new(only_root), 1, None, &Default::default()).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(t2.find_trigger("/").map(|(_, r)| r.to_owned()), Some(String::new()));
    assert_eq!(t2.find_trigger("/a/b").map(|(_, r)| r.to_owned()), Some("/a/b".to_owned()));
    assert_eq!(rest("/zzz/y"), Some(("/".into(), "/zzz/y".into())));
    assert_eq!(rest("/a/b"), Some(("/a".into(), "/b".into())));
}

#[test]
fn weights_split_exactly_and_rules_override() {
    let t = table();
    let none = HeaderMap::new();
    let v2 = (0..100).filter(|_| version_of(&t, "/hello-prod", &none) == "v2").count();
    assert_eq!(v2, 10);

    let mut beta = HeaderMap::new();
    beta.insert("x-user-group", HeaderValue::from_static("qa"));
    assert_eq!(version_of(&t, "/shop/hello", &beta), "v2");
    assert_eq!(version_of(&t, "/shop/hello", &none), "v1");
    assert_eq!(version_of(&t, "/hello-latest", &none), "latest");
}

#[test]
fn sticky_cookie_pins_a_user() {
    let t = table();
    let mut headers = HeaderMap::new();
    headers.insert("cookie", HeaderValue::from_static("a=1; uid=user-7; b=2"));
    let first = version_of(&t, "/hello-pinned", &headers);
    assert!((0..50).all(|_| version_of(&t, "/hello-pinned", &headers) == first));
    let bucket = split::bucket_of(b"user-7");
    assert_eq!(first, if bucket < 50 { "v2" } else { "v1" });
}

#[test]
fn method_restricted_triggers_refuse_other_methods() {
    let t = table();
    let headers = HeaderMap::new();
    let post = t.resolve(&Method::POST, "/shop/hello/deep/er", &headers);
    assert!(matches!(post, Ok(r) if &*r.version.name == "v2"));
    assert!(matches!(t.resolve(&Method::GET, "/shop/hello/deep/er", &headers), Err(Unrouted::MethodNotAllowed)));
}

#[test]
fn upstream_uris_keep_base_path_remainder_and_query() {
    let t = table();
    let headers = HeaderMap::new();
    let r = t.resolve(&Method::POST, "/shop/hello/deep/er/a%20b", &headers).unwrap_or_else(|_| unreachable!());
    let uri = r.version.upstream.uri(r.remainder, Some("q=1&x=%2F")).unwrap_or_else(|e| unreachable!("{e}"));
    // HTTP/1 upstreams get the origin form, the authority goes in `Host`.
    assert_eq!(uri.to_string(), "/base/a%20b?q=1&x=%2F");
    assert_eq!(r.version.upstream.host, "127.0.0.1:9002");
    assert_eq!(r.version.upstream.port(), 9002);
    let r = t.resolve(&Method::GET, "/hello-v1", &headers).unwrap_or_else(|_| unreachable!());
    let uri = r.version.upstream.uri(r.remainder, None).unwrap_or_else(|e| unreachable!("{e}"));
    assert_eq!(uri.to_string(), "/");
}

#[test]
fn cursors_survive_recompilation() {
    let first = table();
    let none = HeaderMap::new();
    let mut v2 = (0..45).filter(|_| version_of(&first, "/hello-prod", &none) == "v2").count();
    let routes = Arc::clone(first.source());
    let second = compile(routes, 2, Some(&first), &Default::default()).unwrap_or_else(|e| unreachable!("{e}"));
    v2 += (0..55).filter(|_| version_of(&second, "/hello-prod", &none) == "v2").count();
    assert_eq!(v2, 10);
}
