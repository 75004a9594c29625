//! deploy/kubernetes: the structure a fleet of graygate replicas needs, checked across files
//! (probes on the admin port, drain timing against shutdown_grace_ms, the Secret behind
//! `${GRAYGATE_ADMIN_TOKEN}`, the ConfigMap mounted as a directory, selectors that select).
//! `kubernetes-validate --strict` checks the same files against the API's schemas in .ci/run.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::files::{at, objects_of, relative, repo, str_at, yaml, yaml_documents, yaml_files};

const BIN: &str = env!("CARGO_BIN_EXE_graygate");
const DIR: &str = "deploy/kubernetes";

/// Overlays that add objects of kinds the base has (a second Service, PodDisruptionBudget, …);
/// each has its own test module (tests/deploy/etcd_overlay.rs).
const OVERLAYS: [&str; 1] = ["deploy/kubernetes/etcd/"];

/// Every object under deploy/kubernetes but the OVERLAYS', by kind (kustomization files included).
struct Manifests {
    objects: Vec<(String, Value)>,
}

impl Manifests {
    fn load() -> Manifests {
        let files = yaml_files(DIR).into_iter().map(|path| relative(&path));
        let objects = files.filter(|file| !OVERLAYS.iter().any(|o| file.starts_with(o))).flat_map(|f| objects_of(&f));
        Manifests { objects: objects.collect() }
    }

    fn all(&self, kind: &str) -> Vec<&Value> {
        self.objects.iter().filter(|(_, o)| o["kind"] == kind).map(|(_, o)| o).collect()
    }

    fn one(&self, kind: &str) -> &Value {
        let all = self.all(kind);
        assert_eq!(all.len(), 1, "one {kind} expected, found {}", all.len());
        all[0]
    }

    fn named(&self, kind: &str, name: &str) -> &Value {
        self.all(kind).into_iter().find(|o| o["metadata"]["name"] == name).unwrap_or_else(|| panic!("no {kind} {name}"))
    }
}

pub fn labels(value: &Value) -> BTreeMap<String, String> {
    value.as_object().map_or_else(BTreeMap::new, |map| {
        map.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect()
    })
}

/// Whether `selector` (matchLabels or a Service selector) selects objects labelled `labels`.
pub fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The graygate container of the Deployment.
fn container(deployment: &Value) -> &Value {
    let containers = at(deployment, "/spec/template/spec/containers", "Deployment").as_array().unwrap();
    containers.iter().find(|c| c["name"] == "graygate").expect("a container named graygate")
}

/// A container port by name or number.
pub fn container_port(container: &Value, port: &Value) -> u64 {
    let ports = container["ports"].as_array().expect("container ports");
    let found = match port {
        Value::String(name) => ports.iter().find(|p| p["name"] == name.as_str()),
        Value::Number(n) => ports.iter().find(|p| p["containerPort"].as_u64() == n.as_u64()),
        _ => None,
    };
    found.and_then(|p| p["containerPort"].as_u64()).unwrap_or_else(|| panic!("no container port {port}"))
}

/// graygate.yaml of the ConfigMap, parsed.
fn server_config(manifests: &Manifests) -> Value {
    let configmap = manifests.one("ConfigMap");
    let text = str_at(configmap, "/data/graygate.yaml", "ConfigMap");
    yaml_documents(text, "graygate.yaml").remove(0)
}

fn port_of(listen: &str) -> u64 {
    listen.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("no port in {listen}"))
}

#[test]
fn the_kinds_a_fleet_needs_are_all_there_and_kustomize_lists_them() {
    let manifests = Manifests::load();
    for kind in
        ["Namespace", "ConfigMap", "Deployment", "PodDisruptionBudget", "ServiceMonitor", "PrometheusRule", "Secret"]
    {
        assert_eq!(manifests.all(kind).len(), 1, "{kind}");
    }
    assert_eq!(manifests.all("Service").len(), 2, "a data Service and an admin Service");

    // Every manifest (the overlays' too) is listed by a kustomization (the Secret example on
    // purpose is not), and everything listed exists.
    let mut listed = Vec::new();
    let kustomizations = yaml_files(DIR).into_iter().filter(|p| p.ends_with("kustomization.yaml"));
    let kustomizations: Vec<_> = kustomizations.flat_map(|path| objects_of(&relative(&path))).collect();
    assert!(kustomizations.len() >= 4, "deploy/kubernetes, base, prometheus-operator, etcd");
    for (file, kustomization) in &kustomizations {
        assert_eq!(kustomization["kind"], "Kustomization", "{file}");
        assert_eq!(kustomization["apiVersion"], "kustomize.config.k8s.io/v1beta1", "{file}");
        assert_eq!(kustomization["namespace"], "graygate", "{file}");
        let dir = repo().join(file).parent().unwrap().canonicalize().unwrap();
        for resource in at(kustomization, "/resources", file).as_array().unwrap() {
            let path = dir.join(resource.as_str().unwrap());
            if path.is_dir() {
                // A base: a directory kustomize can build, never one holding this kustomization
                // (kustomize refuses that cycle).
                assert!(
                    path.join("kustomization.yaml").is_file(),
                    "{file}: {} has no kustomization.yaml",
                    path.display()
                );
                assert!(
                    !dir.starts_with(path.canonicalize().unwrap()),
                    "{file}: {} contains this overlay",
                    path.display()
                );
            } else {
                assert!(path.is_file(), "{file}: {} does not exist", path.display());
                listed.push(path.canonicalize().unwrap());
            }
        }
        assert!(kustomization.get("configMapGenerator").is_none(), "{file}: a generated ConfigMap name restarts pods");
    }
    for path in yaml_files(DIR) {
        let name = path.file_name().unwrap().to_str().unwrap();
        let canonical = path.canonicalize().unwrap();
        if name == "kustomization.yaml" {
            continue;
        }
        let expected = name != "secret.example.yaml";
        assert_eq!(listed.contains(&canonical), expected, "{}: listed by a kustomization", path.display());
    }
    assert_eq!(manifests.one("Namespace")["metadata"]["name"], "graygate");
}

#[test]
fn the_deployment_probes_drains_and_runs_locked_down() {
    let manifests = Manifests::load();
    let deployment = manifests.one("Deployment");
    let server = server_config(&manifests);
    let container = container(deployment);
    let spec = &deployment["spec"]["template"]["spec"];

    assert!(deployment["spec"]["replicas"].as_u64().unwrap() >= 3, "several replicas");
    let pod_labels = labels(&deployment["spec"]["template"]["metadata"]["labels"]);
    assert!(selects(&labels(&deployment["spec"]["selector"]["matchLabels"]), &pod_labels), "selector");

    // Listeners: the container ports are graygate.yaml's, on every interface.
    let admin_port = port_of(str_at(&server, "/admin_listen", "graygate.yaml"));
    let data_port = port_of(str_at(&server, "/listen", "graygate.yaml"));
    assert!(str_at(&server, "/admin_listen", "graygate.yaml").starts_with("0.0.0.0:"), "probes come from the kubelet");
    assert_eq!(container_port(container, &Value::from("admin")), admin_port);
    assert_eq!(container_port(container, &Value::from("http")), data_port);

    // Probes: readiness /readyz, liveness /healthz, both on the admin listener.
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = at(container, &format!("/{probe}/httpGet"), probe);
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(container_port(container, &get["port"]), admin_port, "{probe} on the admin port");
    }

    // Draining: preStop sleeps, then SIGTERM drains for shutdown_grace_ms; the grace period
    // Kubernetes allows (counted from preStop's start) must cover both.
    let command = at(container, "/lifecycle/preStop/exec/command", "preStop").as_array().unwrap();
    assert_eq!(command[0], "sleep", "preStop sleeps");
    let sleep: u64 = command[1].as_str().unwrap().parse().unwrap();
    assert!(sleep >= 5, "endpoint removal needs a few seconds: {sleep}");
    let grace_ms = server.pointer("/timeouts/shutdown_grace_ms").and_then(Value::as_u64).unwrap_or(30_000);
    let termination = spec["terminationGracePeriodSeconds"].as_u64().expect("terminationGracePeriodSeconds");
    assert!(
        termination * 1000 > sleep * 1000 + grace_ms,
        "terminationGracePeriodSeconds {termination} must exceed preStop {sleep} s + shutdown_grace_ms {grace_ms}"
    );

    // Resources and security.
    for pointer in
        ["/resources/requests/cpu", "/resources/requests/memory", "/resources/limits/cpu", "/resources/limits/memory"]
    {
        assert!(container.pointer(pointer).is_some(), "{pointer}");
    }
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert!(spec["securityContext"]["runAsUser"].as_u64().is_some_and(|uid| uid > 0));
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // Prometheus annotations point at the admin port's /metrics.
    let annotations = labels(&deployment["spec"]["template"]["metadata"]["annotations"]);
    assert_eq!(annotations.get("prometheus.io/scrape").map(String::as_str), Some("true"));
    assert_eq!(annotations.get("prometheus.io/port"), Some(&admin_port.to_string()));
    assert_eq!(annotations.get("prometheus.io/path").map(String::as_str), Some("/metrics"));
}

#[test]
fn the_configmap_is_mounted_as_a_directory_and_names_both_files() {
    let manifests = Manifests::load();
    let deployment = manifests.one("Deployment");
    let configmap = manifests.one("ConfigMap");
    let server = server_config(&manifests);
    let container = container(deployment);

    let args: Vec<&str> = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    let config = args[args.iter().position(|a| *a == "--config").expect("--config") + 1];
    let (dir, file) = config.rsplit_once('/').unwrap();
    assert!(configmap["data"].get(file).is_some(), "the ConfigMap holds {file}");
    let routes = str_at(&server, "/routes", "graygate.yaml");
    assert!(
        !routes.contains('/') && configmap["data"].get(routes).is_some(),
        "routes {routes} is the ConfigMap's other file"
    );

    let volume = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["configMap"]["name"] == configmap["metadata"]["name"])
        .expect("a volume of the ConfigMap");
    let mount = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == volume["name"])
        .expect("the ConfigMap volume is mounted");
    assert_eq!(mount["mountPath"], dir, "mounted where --config points");
    assert!(mount.get("subPath").is_none(), "a subPath mount never sees ConfigMap updates");
    assert!(volume["configMap"].get("items").is_none(), "every key of the ConfigMap, as files in one directory");
}

#[test]
fn admin_credentials_come_from_the_secret_through_the_environment() {
    let manifests = Manifests::load();
    let deployment = manifests.one("Deployment");
    let secret = manifests.one("Secret");
    let server = server_config(&manifests);
    let container = container(deployment);

    let tokens = at(&server, "/admin/tokens", "graygate.yaml").as_array().unwrap();
    assert!(!tokens.is_empty(), "a non-loopback admin listener needs credentials");
    let env = container["env"].as_array().unwrap();
    let mut references = 0;
    for token in tokens {
        let token = token.as_str().unwrap();
        let name =
            token.strip_prefix("${").and_then(|t| t.strip_suffix('}')).expect("the token is an ${ENV} reference");
        let var = env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("no env {name}"));
        let reference = at(var, "/valueFrom/secretKeyRef", name);
        assert_eq!(reference["name"], secret["metadata"]["name"], "{name} comes from the Secret");
        assert!(
            secret["stringData"].get(reference["key"].as_str().unwrap()).is_some(),
            "the Secret has key {}",
            reference["key"]
        );
        assert!(reference.get("optional").is_none_or(|o| o == false), "a pod without the Secret must not start");
        references += 1;
    }
    assert_eq!(references, 1);
    assert_eq!(secret["metadata"]["namespace"], "graygate");
}

#[test]
fn services_pdb_and_servicemonitor_select_what_they_should() {
    let manifests = Manifests::load();
    let deployment = manifests.one("Deployment");
    let container = container(deployment);
    let pod_labels = labels(&deployment["spec"]["template"]["metadata"]["labels"]);

    let data = manifests.named("Service", "graygate");
    let admin = manifests.named("Service", "graygate-admin");
    for (service, port_name) in [(data, "http"), (admin, "admin")] {
        let name = service["metadata"]["name"].as_str().unwrap();
        assert!(selects(&labels(&service["spec"]["selector"]), &pod_labels), "{name} selects the pods");
        let ports = service["spec"]["ports"].as_array().unwrap();
        assert_eq!(ports.len(), 1, "{name}");
        let target = &ports[0]["targetPort"];
        assert_eq!(container_port(container, target), container_port(container, &Value::from(port_name)), "{name}");
    }

    let pdb = manifests.one("PodDisruptionBudget");
    assert!(selects(&labels(&pdb["spec"]["selector"]["matchLabels"]), &pod_labels), "the PDB covers the pods");
    let replicas = deployment["spec"]["replicas"].as_u64().unwrap();
    let max_unavailable = pdb["spec"]["maxUnavailable"].as_u64().expect("maxUnavailable");
    assert!(max_unavailable >= 1 && max_unavailable < replicas, "drains can proceed and never take all replicas");

    let monitor = manifests.one("ServiceMonitor");
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    let selector = labels(&monitor["spec"]["selector"]["matchLabels"]);
    assert!(selects(&selector, &labels(&admin["metadata"]["labels"])), "the ServiceMonitor selects the admin Service");
    assert!(!selects(&selector, &labels(&data["metadata"]["labels"])), "and not the data Service");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["path"], "/metrics");
    assert!(admin["spec"]["ports"].as_array().unwrap().iter().any(|p| p["name"] == endpoint["port"]), "endpoint port");
    let job_label = monitor["spec"]["jobLabel"].as_str().expect("jobLabel");
    assert_eq!(
        labels(&admin["metadata"]["labels"]).get(job_label).map(String::as_str),
        Some("graygate"),
        "job=graygate"
    );
}

#[test]
fn the_prometheusrule_is_rules_yml() {
    let manifests = Manifests::load();
    let rule = manifests.one("PrometheusRule");
    let rules = yaml("deploy/prometheus/rules.yml");
    assert_eq!(rule["spec"]["groups"], rules["groups"], "regenerate with tests/deploy/prometheusrule.py");
}

/// A directory holding the ConfigMap's files, with listeners moved to free loopback ports.
fn configmap_dir(manifests: &Manifests, edit: impl Fn(&str) -> String) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in manifests.one("ConfigMap")["data"].as_object().unwrap() {
        let content = content.as_str().unwrap();
        let content = if name == "graygate.yaml" { edit(content) } else { content.to_owned() };
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// Runs `graygate ARGS` with `env` to completion (30 s at most): (exit code, stdout + stderr).
pub fn graygate(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(BIN);
    command.args(args).env_remove("GRAYGATE_ADMIN_TOKEN").env("NO_COLOR", "1").stdin(Stdio::null());
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("graygate {args:?} still running after 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    (output.status.code(), text)
}

#[test]
fn graygate_accepts_the_configmap_only_with_the_secret() {
    let manifests = Manifests::load();
    let dir = configmap_dir(&manifests, str::to_owned);
    let config = dir.path().join("graygate.yaml");
    let config = config.to_str().unwrap();

    let (code, output) = graygate(&["check", "--config", config], &[("GRAYGATE_ADMIN_TOKEN", "from-the-secret")]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("ok (listen 0.0.0.0:8080, admin 0.0.0.0:9090)"), "{output}");
    let squeezed = output.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(squeezed.contains("alias prod -> v1 90%, v2 10%; sticky by header x-user-id"), "{output}");

    let (code, output) = graygate(&["check", "--config", config], &[]);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("environment variable GRAYGATE_ADMIN_TOKEN is not set"), "{output}");

    // Without the token line, the non-loopback admin listener makes graygate refuse to start
    // (ports moved to 0 so that nothing could be bound if it did start).
    let open = configmap_dir(&manifests, |text| {
        let text = text.replace("0.0.0.0:8080", "127.0.0.1:0").replace("0.0.0.0:9090", "0.0.0.0:0");
        let token = r#"tokens: ["${GRAYGATE_ADMIN_TOKEN}"]"#;
        assert!(text.contains(token), "the token line is there to remove");
        text.replace(token, "tokens: []")
    });
    let config = open.path().join("graygate.yaml");
    let (code, output) = graygate(&["serve", "--config", config.to_str().unwrap()], &[]);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("is not a loopback address and no admin tokens or keys are configured"), "{output}");
}
