//! deploy/kubernetes/etcd: the base with its routing state in etcd. The kustomization's inline
//! patches are applied here to the base's objects (graygate.yaml with an etcd block whose
//! endpoint is the client Service, routes.yaml gone, a writable volume where the snapshot is
//! written), the example etcd StatefulSet's members are checked against the headless Service
//! that names them, and `graygate check` reads the patched graygate.yaml. `tests/deploy/run.sh
//! static` renders the overlay with kustomize itself where kubectl is installed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;

use crate::files::{at, objects_of, read, relative, str_at, yaml, yaml_documents, yaml_files};
use crate::manifests::{container_port, graygate, labels, selects};

const DIR: &str = "deploy/kubernetes/etcd";
const BASE: &str = "deploy/kubernetes/base";

/// The overlay's kustomization and the objects of its own files.
struct Overlay {
    kustomization: Value,
    objects: Vec<Value>,
}

impl Overlay {
    fn load() -> Overlay {
        let kustomization = yaml(&format!("{DIR}/kustomization.yaml"));
        let files = yaml_files(DIR).into_iter().map(|path| relative(&path));
        let files = files.filter(|file| !file.ends_with("/kustomization.yaml"));
        let objects = files.flat_map(|file| objects_of(&file)).map(|(_, object)| object).collect();
        Overlay { kustomization, objects }
    }

    fn namespace(&self) -> &str {
        str_at(&self.kustomization, "/namespace", "the overlay's kustomization")
    }

    fn one(&self, kind: &str) -> &Value {
        let all: Vec<&Value> = self.objects.iter().filter(|o| o["kind"] == kind).collect();
        assert_eq!(all.len(), 1, "one {kind} expected in {DIR}, found {}", all.len());
        all[0]
    }

    fn service(&self, name: &str) -> &Value {
        let found = self.objects.iter().find(|o| o["kind"] == "Service" && o["metadata"]["name"] == name);
        found.unwrap_or_else(|| panic!("{DIR}: no Service {name}"))
    }

    /// The client Service: the one with a cluster IP.
    fn client_service(&self) -> &Value {
        let services: Vec<&Value> =
            self.objects.iter().filter(|o| o["kind"] == "Service" && o["spec"]["clusterIP"] != "None").collect();
        assert_eq!(services.len(), 1, "one client Service (and a headless one) expected");
        services[0]
    }

    /// The parsed inline patch whose target is `kind`/`name`.
    fn patch(&self, kind: &str, name: &str) -> Value {
        let patches = at(&self.kustomization, "/patches", "the overlay's kustomization").as_array().unwrap();
        let patch = patches
            .iter()
            .find(|p| p["target"]["kind"] == kind && p["target"]["name"] == name)
            .unwrap_or_else(|| panic!("no patch of {kind} {name}"));
        let text = str_at(patch, "/patch", "a patch");
        yaml_documents(text, &format!("the patch of {kind} {name}")).remove(0)
    }
}

/// The base's one object of `kind`.
fn base(kind: &str) -> Value {
    let objects = yaml_files(BASE).into_iter().flat_map(|path| objects_of(&relative(&path)));
    let mut all: Vec<Value> = objects.map(|(_, o)| o).filter(|o| o["kind"] == kind).collect();
    assert_eq!(all.len(), 1, "one {kind} in {BASE}");
    all.remove(0)
}

/// The base's ConfigMap with the overlay's JSON6902 operations applied (add, replace, remove).
fn patched_configmap(overlay: &Overlay) -> Value {
    let mut configmap = base("ConfigMap");
    let name = configmap["metadata"]["name"].as_str().unwrap().to_owned();
    for op in overlay.patch("ConfigMap", &name).as_array().expect("a JSON6902 patch: a list of operations") {
        let path = str_at(op, "/path", "a patch operation");
        let (parent, key) = path.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/").replace("~0", "~");
        let parent = configmap.pointer_mut(parent).and_then(Value::as_object_mut).expect("the parent exists");
        match str_at(op, "/op", path) {
            "add" => drop(parent.insert(key, op["value"].clone())),
            "replace" => {
                assert!(parent.contains_key(&key), "replace {path}: no such key in the base");
                parent.insert(key, op["value"].clone());
            }
            "remove" => assert!(parent.remove(&key).is_some(), "remove {path}: no such key in the base"),
            other => panic!("{path}: op {other} is not expected here"),
        }
    }
    configmap
}

/// The patched graygate.yaml, as text and parsed.
fn server_config(overlay: &Overlay) -> (String, Value) {
    let text = str_at(&patched_configmap(overlay), "/data/graygate.yaml", "ConfigMap").to_owned();
    let parsed = yaml_documents(&text, "the overlay's graygate.yaml").remove(0);
    (text, parsed)
}

/// The first (only) container of the StatefulSet's pods.
fn etcd_container(statefulset: &Value) -> &Value {
    let containers = at(statefulset, "/spec/template/spec/containers", "StatefulSet").as_array().unwrap();
    assert_eq!(containers.len(), 1, "one etcd container");
    &containers[0]
}

/// `--flag=value` arguments of a container, by flag.
fn flags(container: &Value) -> BTreeMap<String, String> {
    let args = at(container, "/args", "the etcd container").as_array().unwrap();
    args.iter()
        .map(|a| a.as_str().unwrap().split_once('=').unwrap_or_else(|| panic!("{a}: not --flag=value")))
        .map(|(flag, value)| (flag.to_owned(), value.to_owned()))
        .collect()
}

/// `value` with each `$(VAR)` expanded as the kubelet does for pod `pod` in `namespace`, from
/// the container's env (fieldRef metadata.name / metadata.namespace, or a literal value).
fn expand(value: &str, container: &Value, pod: &str, namespace: &str) -> String {
    let env = container["env"].as_array().expect("env");
    let mut out = value.to_owned();
    while let Some(start) = out.find("$(") {
        let end = start + out[start..].find(')').expect("a closed $(VAR)");
        let name = &out[start + 2..end];
        let var = env.iter().find(|e| e["name"] == name).unwrap_or_else(|| panic!("$({name}) is not in env"));
        let expanded = match var.pointer("/valueFrom/fieldRef/fieldPath").and_then(Value::as_str) {
            Some("metadata.name") => pod.to_owned(),
            Some("metadata.namespace") => namespace.to_owned(),
            Some(other) => panic!("$({name}): fieldRef {other}"),
            None => str_at(var, "/value", name).to_owned(),
        };
        out.replace_range(start..=end, &expanded);
    }
    out
}

/// (host, port) of `http://host:port`.
fn host_port(url: &str) -> (String, u64) {
    let rest = url.strip_prefix("http://").unwrap_or_else(|| panic!("{url}: not http://"));
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').unwrap_or_else(|| panic!("{url}: no port"));
    (host.to_owned(), port.parse().unwrap_or_else(|_| panic!("{url}: port")))
}

/// The port a Service's port entry sends to, resolved against the container.
fn target(container: &Value, port: &Value) -> u64 {
    container_port(container, &port["targetPort"])
}

#[test]
fn the_overlay_is_the_base_plus_its_own_commented_files() {
    let overlay = Overlay::load();
    let kustomization = &overlay.kustomization;
    assert_eq!(kustomization["apiVersion"], "kustomize.config.k8s.io/v1beta1");
    assert_eq!(kustomization["kind"], "Kustomization");
    assert_eq!(overlay.namespace(), "graygate");
    assert!(kustomization.get("configMapGenerator").is_none(), "a generated ConfigMap name restarts pods");

    let resources: Vec<&str> =
        at(kustomization, "/resources", DIR).as_array().unwrap().iter().map(|r| r.as_str().unwrap()).collect();
    assert_eq!(resources[0], "../base", "the base first");
    let listed: BTreeSet<&str> = resources[1..].iter().copied().collect();
    let files: Vec<String> =
        yaml_files(DIR).iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_owned()).collect();
    let own: BTreeSet<&str> = files.iter().map(String::as_str).filter(|f| *f != "kustomization.yaml").collect();
    assert_eq!(listed, own, "the overlay lists exactly its own files");
    assert_eq!(listed.len() + 1, resources.len(), "no file listed twice");

    for file in &own {
        let text = read(&format!("{DIR}/{file}"));
        let head: Vec<&str> = text.lines().map_while(|l| l.strip_prefix('#')).map(str::trim).collect();
        let head = head.join(" ");
        assert!(head.contains("existing etcd"), "{file}: the comment at the top says how to use an existing etcd");
    }
    for kind in ["StatefulSet", "PodDisruptionBudget"] {
        overlay.one(kind);
    }
    let patches = at(kustomization, "/patches", DIR).as_array().unwrap();
    assert_eq!(patches.len(), 2, "the ConfigMap's and the Deployment's");
}

#[test]
fn graygate_yaml_reads_etcd_through_the_client_service_and_routes_yaml_is_gone() {
    let overlay = Overlay::load();
    let configmap = patched_configmap(&overlay);
    let keys: Vec<&String> = configmap["data"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["graygate.yaml"], "routes.yaml is removed: the state is in etcd");
    let (_, server) = server_config(&overlay);
    assert!(server.get("routes").is_none(), "routes and etcd together are a config error");
    let etcd = at(&server, "/etcd", "the overlay's graygate.yaml");

    // What the base's graygate.yaml says about listeners, credentials and draining stays.
    let base_text = base("ConfigMap")["data"]["graygate.yaml"].as_str().unwrap().to_owned();
    let base_server = yaml_documents(&base_text, "the base's graygate.yaml").remove(0);
    for pointer in ["/listen", "/admin_listen", "/admin", "/timeouts/shutdown_grace_ms"] {
        assert!(base_server.pointer(pointer).is_some(), "the base has {pointer}");
        assert_eq!(server.pointer(pointer), base_server.pointer(pointer), "{pointer} as in the base");
    }

    // The endpoints: the client Service by its cluster DNS name, on the port that reaches the
    // StatefulSet's client listener.
    let service = overlay.client_service();
    let statefulset = overlay.one("StatefulSet");
    let container = etcd_container(statefulset);
    let client_port = container_port(container, &Value::from("client"));
    assert_eq!(host_port(&flags(container)["--listen-client-urls"]).1, client_port, "etcd listens on its client port");
    let name = service["metadata"]["name"].as_str().unwrap();
    let endpoints = at(etcd, "/endpoints", "etcd").as_array().unwrap();
    assert!(!endpoints.is_empty());
    for endpoint in endpoints {
        let (host, port) = host_port(endpoint.as_str().unwrap());
        let short = format!("{name}.{}.svc", overlay.namespace());
        assert!(host == short || host == format!("{short}.cluster.local"), "{endpoint}: not the Service {short}");
        let ports = service["spec"]["ports"].as_array().unwrap();
        let entry = ports.iter().find(|p| p["port"].as_u64() == Some(port)).expect("the endpoint's Service port");
        assert_eq!(target(container, entry), client_port, "{endpoint}: reaches etcd's client port");
    }
    let prefix = str_at(etcd, "/prefix", "etcd");
    assert!(prefix.starts_with('/') && prefix.len() > 1, "prefix {prefix}");
}

#[test]
fn the_snapshot_is_written_to_a_writable_volume_of_the_deployment() {
    let overlay = Overlay::load();
    let (_, server) = server_config(&overlay);
    let snapshot = str_at(&server, "/etcd/snapshot", "etcd");
    assert!(snapshot.starts_with('/'), "{snapshot}: absolute (relative would be the read-only ConfigMap mount)");
    let dir = Path::new(snapshot).parent().unwrap().to_str().unwrap();

    let deployment = base("Deployment");
    let name = deployment["metadata"]["name"].as_str().unwrap().to_owned();
    let patch = overlay.patch("Deployment", &name);
    assert_eq!(patch["kind"], "Deployment", "a strategic merge patch");
    let containers = at(&patch, "/spec/template/spec/containers", "the Deployment patch").as_array().unwrap();
    let container = containers.iter().find(|c| c["name"] == "graygate").expect("the graygate container, by name");
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = mounts.iter().find(|m| m["mountPath"] == dir).unwrap_or_else(|| panic!("nothing mounted at {dir}"));
    assert!(mount.get("readOnly").is_none_or(|r| r == false), "{dir} is writable");
    assert!(mount.get("subPath").is_none());
    let volumes = at(&patch, "/spec/template/spec/volumes", "the Deployment patch").as_array().unwrap();
    let volume = volumes.iter().find(|v| v["name"] == mount["name"]).expect("the mounted volume");
    assert!(volume.get("emptyDir").is_some(), "an emptyDir: each pod writes its own snapshot");

    // Beside the base's volumes and mounts, not over them.
    let base_spec = &deployment["spec"]["template"]["spec"];
    let base_container = base_spec["containers"].as_array().unwrap().iter().find(|c| c["name"] == "graygate").unwrap();
    for base_mount in base_container["volumeMounts"].as_array().unwrap() {
        let path = base_mount["mountPath"].as_str().unwrap();
        assert!(!dir.starts_with(path) && base_mount["name"] != mount["name"], "{dir} is not under {path}");
    }
    assert!(base_spec["volumes"].as_array().unwrap().iter().all(|v| v["name"] != volume["name"]));
    assert_eq!(base_container["securityContext"]["readOnlyRootFilesystem"], true, "why the volume is needed");
}

#[test]
fn the_etcd_members_find_each_other_through_the_headless_service() {
    let overlay = Overlay::load();
    let statefulset = overlay.one("StatefulSet");
    let name = statefulset["metadata"]["name"].as_str().unwrap();
    let namespace = overlay.namespace();
    let replicas = statefulset["spec"]["replicas"].as_u64().expect("replicas");
    assert!(replicas >= 3 && replicas % 2 == 1, "an odd quorum of at least 3: {replicas}");
    assert_eq!(statefulset["spec"]["podManagementPolicy"], "Parallel", "one member alone never becomes ready");

    let headless = overlay.service(str_at(statefulset, "/spec/serviceName", "StatefulSet"));
    let peers = headless["metadata"]["name"].as_str().unwrap();
    assert_eq!(headless["spec"]["clusterIP"], "None", "{peers}: headless");
    assert_eq!(headless["spec"]["publishNotReadyAddresses"], true, "{peers}: names before any member is ready");

    let container = etcd_container(statefulset);
    let flags = flags(container);
    let peer_port = container_port(container, &Value::from("peer"));
    assert_eq!(host_port(&flags["--listen-peer-urls"]).1, peer_port);
    assert_eq!(flags["--initial-cluster-state"], "new");

    let cluster = expand(&flags["--initial-cluster"], container, &format!("{name}-0"), namespace);
    let members: BTreeMap<&str, &str> =
        cluster.split(',').map(|m| m.split_once('=').unwrap_or_else(|| panic!("{m}: not name=url"))).collect();
    let expected: BTreeSet<String> = (0..replicas).map(|i| format!("{name}-{i}")).collect();
    assert_eq!(members.keys().map(|m| (*m).to_owned()).collect::<BTreeSet<_>>(), expected, "--initial-cluster");
    assert_eq!(members.len() as u64, replicas, "one entry per member");
    for pod in &expected {
        let url = members[pod.as_str()];
        assert_eq!(host_port(url), (format!("{pod}.{peers}.{namespace}.svc"), peer_port), "{pod}");
        // What each member says of itself is what the others dial.
        assert_eq!(expand(&flags["--name"], container, pod, namespace), *pod);
        assert_eq!(expand(&flags["--initial-advertise-peer-urls"], container, pod, namespace), url, "{pod}");
        let advertised = host_port(&expand(&flags["--advertise-client-urls"], container, pod, namespace));
        assert_eq!(advertised, (format!("{pod}.{peers}.{namespace}.svc"), container_port(container, &"client".into())));
    }

    // Data on the volumeClaimTemplate.
    let claims = at(statefulset, "/spec/volumeClaimTemplates", "StatefulSet").as_array().unwrap();
    assert_eq!(claims.len(), 1);
    let claim = &claims[0];
    assert_eq!(claim["spec"]["accessModes"], serde_json::json!(["ReadWriteOnce"]));
    assert!(claim.pointer("/spec/resources/requests/storage").is_some());
    let mounts = container["volumeMounts"].as_array().unwrap();
    let mount = mounts.iter().find(|m| m["name"] == claim["metadata"]["name"]).expect("the claim is mounted");
    let data_dir = &flags["--data-dir"];
    assert!(Path::new(data_dir).starts_with(mount["mountPath"].as_str().unwrap()), "{data_dir} on the claim");
}

#[test]
fn the_etcd_pods_are_probed_and_locked_down() {
    let overlay = Overlay::load();
    let statefulset = overlay.one("StatefulSet");
    let container = etcd_container(statefulset);
    let flags = flags(container);
    let listened: BTreeSet<u64> = ["--listen-client-urls", "--listen-metrics-urls"]
        .iter()
        .filter_map(|flag| flags.get(*flag))
        .map(|url| host_port(url).1)
        .collect();
    for probe in ["readinessProbe", "livenessProbe"] {
        let get = at(container, &format!("/{probe}/httpGet"), probe);
        assert!(listened.contains(&container_port(container, &get["port"])), "{probe}: on a port etcd serves");
        assert!(get["path"].as_str().is_some_and(|p| p.starts_with('/')), "{probe}: a path");
    }
    let image = str_at(container, "/image", "the etcd container");
    let tag = image.rsplit_once(':').map(|(_, tag)| tag).expect("a pinned tag");
    assert!(tag != "latest" && tag.starts_with("v3."), "{image}");

    let spec = &statefulset["spec"]["template"]["spec"];
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    for id in ["runAsUser", "fsGroup"] {
        assert!(spec["securityContext"][id].as_u64().is_some_and(|n| n > 0), "{id}: non-root, volume writable");
    }
    assert_eq!(spec["automountServiceAccountToken"], false);
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for pointer in ["/resources/requests/cpu", "/resources/requests/memory", "/resources/limits/memory"] {
        assert!(container.pointer(pointer).is_some(), "{pointer}");
    }
}

#[test]
fn services_and_pdb_select_the_etcd_pods_and_nothing_of_graygate() {
    let overlay = Overlay::load();
    let statefulset = overlay.one("StatefulSet");
    let container = etcd_container(statefulset);
    let pods = labels(&statefulset["spec"]["template"]["metadata"]["labels"]);
    assert!(selects(&labels(&statefulset["spec"]["selector"]["matchLabels"]), &pods), "the StatefulSet's selector");

    let client = overlay.client_service();
    let headless = overlay.service(str_at(statefulset, "/spec/serviceName", "StatefulSet"));
    for service in [client, headless] {
        let name = service["metadata"]["name"].as_str().unwrap();
        assert!(selects(&labels(&service["spec"]["selector"]), &pods), "{name} selects the etcd pods");
        for port in service["spec"]["ports"].as_array().unwrap() {
            let named = container_port(container, &Value::from(port["name"].as_str().unwrap()));
            assert_eq!(target(container, port), named, "{name}: port {} reaches its container port", port["name"]);
        }
    }
    let peer = container_port(container, &Value::from("peer"));
    assert!(headless["spec"]["ports"].as_array().unwrap().iter().any(|p| target(container, p) == peer), "peers");

    let pdb = overlay.one("PodDisruptionBudget");
    assert!(selects(&labels(&pdb["spec"]["selector"]["matchLabels"]), &pods), "the PDB covers the etcd pods");
    let replicas = statefulset["spec"]["replicas"].as_u64().unwrap();
    assert_eq!(pdb["spec"]["maxUnavailable"].as_u64(), Some(1), "a drain keeps the quorum of {replicas}");

    // graygate's selectors and etcd's never cross.
    let deployment = base("Deployment");
    let gateway = labels(&deployment["spec"]["template"]["metadata"]["labels"]);
    let mut base_selectors = vec![labels(&deployment["spec"]["selector"]["matchLabels"])];
    base_selectors.push(labels(&base("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]));
    let base_services = yaml_files(BASE).into_iter().flat_map(|path| objects_of(&relative(&path)));
    base_selectors
        .extend(base_services.filter(|(_, o)| o["kind"] == "Service").map(|(_, o)| labels(&o["spec"]["selector"])));
    assert_eq!(base_selectors.len(), 4);
    for selector in &base_selectors {
        assert!(!selects(selector, &pods), "a graygate selector {selector:?} selects the etcd pods");
    }
    for selector in [labels(&client["spec"]["selector"]), labels(&pdb["spec"]["selector"]["matchLabels"])] {
        assert!(!selects(&selector, &gateway), "an etcd selector {selector:?} selects graygate's pods");
    }
}

#[test]
fn graygate_checks_the_overlay_config_with_etcd_unreachable() {
    let overlay = Overlay::load();
    let (text, _) = server_config(&overlay);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("graygate.yaml");
    std::fs::write(&config, &text).unwrap();
    let config = config.to_str().unwrap();

    // No etcd answers at graygate-etcd.graygate.svc here: the config is checked, the stored
    // state is not, and that is not an error.
    let (code, output) = graygate(&["check", "--config", config], &[("GRAYGATE_ADMIN_TOKEN", "from-the-secret")]);
    assert_eq!(code, Some(0), "{output}");
    assert!(output.contains("ok (listen 0.0.0.0:8080, admin 0.0.0.0:9090)"), "{output}");
    assert!(output.contains("etcd /graygate: not reachable"), "{output}");

    let (code, output) = graygate(&["check", "--config", config], &[]);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("environment variable GRAYGATE_ADMIN_TOKEN is not set"), "{output}");
}
