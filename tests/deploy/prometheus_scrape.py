#!/usr/bin/env python3
"""A real Prometheus scraping a real graygate, with deploy/prometheus/ as shipped.

On loopback, bounded in time, stopping everything it started:
  1. two echo backends (v1, v2) and `graygate serve` with alias prod at 90/10;
  2. Prometheus with deploy/prometheus/prometheus.yml (target, scrape and evaluation
     intervals replaced: 1 s) and rules.yml, in a temporary storage directory;
  3. 3 000 requests through the alias (after 100 that create the series); Prometheus's HTTP
     API must report per-version increases and rates in a 90/10 split (within 2 points), the
     recording rules the same share and the configured weights, and no graygate alert
     pending or firing;
  4. an invalid routes file: GraygateConfigReloadFailed fires;
  5. v2's backend killed under traffic: its upstream is ejected and GraygateUpstreamEjected fires;
  6. every query of deploy/grafana/graygate-dashboard.json (panels, annotations, variables)
     runs against this Prometheus and returns data;
  7. `promtool check metrics` passes on a scrape of the gateway's /metrics.

Usage: tests/deploy/prometheus_scrape.py  (GRAYGATE_BIN, PROMETHEUS, PROMTOOL pick the binaries)
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.path.abspath(os.path.join(ROOT, os.environ.get("GRAYGATE_BIN", "target/debug/graygate")))
PROMETHEUS = os.environ.get("PROMETHEUS", "prometheus")
PROMTOOL = os.environ.get("PROMTOOL", "promtool")
LIMIT_S = 240  # the whole run
STARTED = time.monotonic()

passed = 0
failed = 0
processes = []


def log(message):
    print(f"[prometheus] {message}", flush=True)


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        log(f"PASS {what}")
    else:
        failed += 1
        log(f"FAIL {what}")
    return ok


def remaining():
    left = LIMIT_S - (time.monotonic() - STARTED)
    if left <= 0:
        raise TimeoutError(f"the whole run exceeded {LIMIT_S} s")
    return left


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, name, work, **kwargs):
    out = open(os.path.join(work, f"{name}.log"), "w")
    process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kwargs)
    processes.append((name, process))
    return process


def get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=min(timeout, remaining())) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except (OSError, http.client.HTTPException) as error:
        return None, str(error)


def wait_for(what, probe, limit=20.0, interval=0.2):
    """Polls `probe` until it returns a true value (returned), or fails after `limit` seconds."""
    deadline = time.monotonic() + min(limit, remaining())
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {limit} s waiting for {what}")
        time.sleep(interval)


class Prometheus:
    def __init__(self, port):
        self.base = f"http://127.0.0.1:{port}"

    def query(self, expr):
        """The instant vector of `expr` now: [(labels, value)]. Fails on an API error."""
        status, body = get(f"{self.base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if status != 200:
            raise AssertionError(f"query failed ({status}): {expr}\n{body}")
        data = json.loads(body)["data"]
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(r["metric"], float(r["value"][1])) for r in data["result"]]

    def by(self, expr, label):
        return {labels.get(label, ""): value for labels, value in self.query(expr)}

    def alerts(self):
        status, body = get(f"{self.base}/api/v1/alerts")
        assert status == 200, body
        return json.loads(body)["data"]["alerts"]

    def alert(self, name, state="firing", **labels):
        return [
            a
            for a in self.alerts()
            if a["labels"].get("alertname") == name
            and a["state"] == state
            and all(a["labels"].get(k) == v for k, v in labels.items())
        ]


def routes(up1, up2, broken=False):
    weights = "{ v2: 10 }" if not broken else "{ v2: 10"  # not even YAML when broken
    return f"""project_id: p1
functions:
  - name: hello
    upstream: http://127.0.0.1:{up1}
    versions:
      - {{ version: v1, upstream: "http://127.0.0.1:{up1}" }}
      - {{ version: v2, upstream: "http://127.0.0.1:{up2}" }}
    aliases:
      - {{ name: prod, version: v1, additional_version_weights: {weights} }}
    triggers:
      - {{ target: prod }}
"""


def save(path, text):
    """As an editor saves: a temporary file renamed over the old one."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def drive(port, n, path="/hello-prod"):
    """`n` sequential GETs over one keep-alive connection: {status: count}, {version: count}."""
    statuses, versions = {}, {}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for _ in range(n):
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            response.read()
            status, version = response.status, response.getheader("x-graygate-version", "")
        except (OSError, http.client.HTTPException):
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            status, version = "error", ""
        statuses[status] = statuses.get(status, 0) + 1
        versions[version] = versions.get(version, 0) + 1
    connection.close()
    return statuses, versions


def share(values, version):
    total = sum(values.values())
    return 100.0 * values.get(version, 0.0) / total if total else float("nan")


def dashboard_queries():
    """(where, PromQL) of every panel target, annotation and query variable of the dashboard."""
    dashboard = json.load(open(os.path.join(ROOT, "deploy", "grafana", "graygate-dashboard.json")))
    found = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for annotation in dashboard["annotations"]["list"]:
        if "expr" in annotation:
            found.append((f"annotation {annotation['name']!r}", annotation["expr"]))
    return dashboard, found


def grafana_to_promql(expr):
    return (
        expr.replace('job=~"$job"', 'job=~"graygate"')
        .replace("$function", "hello")
        .replace("$__rate_interval", "1m")
        .replace("$__interval", "15s")
    )


def main():
    for tool in (PROMETHEUS, PROMTOOL):
        if shutil.which(tool) is None:
            log(f"FAIL {tool} not found (apt-get install prometheus)")
            return 1
    if not os.access(BIN, os.X_OK):
        log(f"FAIL no graygate binary at {BIN} (set GRAYGATE_BIN)")
        return 1
    work = tempfile.mkdtemp(prefix="graygate-prometheus-")
    try:
        run(work)
    except (AssertionError, TimeoutError) as error:
        check(False, str(error))
    finally:
        for name, process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for name, process in reversed(processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if failed:
            for name in ("graygate", "prometheus"):
                path = os.path.join(work, f"{name}.log")
                if os.path.exists(path):
                    log(f"--- {name}.log (last 30 lines) ---")
                    print("".join(open(path).readlines()[-30:]))
        shutil.rmtree(work, ignore_errors=True)
    log(f"{time.monotonic() - STARTED:.0f} s")
    print(f"prometheus: {passed} passed, {failed} failed")
    return 1 if failed else 0


def run(work):
    up1, up2, data, admin, prom_port = (free_port() for _ in range(5))

    # --- graygate and its backends -----------------------------------------------------------
    start([BIN, "echo-backend", "--listen", f"127.0.0.1:{up1}", "--name", "v1"], "v1", work)
    backend2 = start([BIN, "echo-backend", "--listen", f"127.0.0.1:{up2}", "--name", "v2"], "v2", work)
    gw_dir = os.path.join(work, "gateway")
    os.makedirs(gw_dir)
    routes_path = os.path.join(gw_dir, "routes.yaml")
    save(routes_path, routes(up1, up2))
    with open(os.path.join(gw_dir, "graygate.yaml"), "w") as f:
        f.write(
            f"listen: 127.0.0.1:{data}\nadmin_listen: 127.0.0.1:{admin}\nroutes: routes.yaml\n"
            "reload: { debounce_ms: 50, poll_ms: 1000 }\n"
        )
    start([BIN, "serve", "--config", os.path.join(gw_dir, "graygate.yaml")], "graygate", work, env=dict(os.environ, RUST_LOG="warn"))
    for port in (up1, up2):
        wait_for(f"backend on {port}", lambda port=port: get(f"http://127.0.0.1:{port}/")[0] == 200)
    wait_for("graygate /readyz", lambda: get(f"http://127.0.0.1:{admin}/readyz")[0] == 200)

    # --- Prometheus with the shipped config, adapted ------------------------------------------
    prom_dir = os.path.join(work, "prometheus")
    os.makedirs(prom_dir)
    config = open(os.path.join(ROOT, "deploy", "prometheus", "prometheus.yml")).read()
    for old, new in [
        ("scrape_interval: 15s", "scrape_interval: 1s"),
        ("evaluation_interval: 15s", "evaluation_interval: 1s"),
        ("- 127.0.0.1:9090", f"- 127.0.0.1:{admin}"),
    ]:
        if not check(config.count(old) == 1, f"prometheus.yml has `{old}` once, to replace with `{new}`"):
            return
        config = config.replace(old, new)
    with open(os.path.join(prom_dir, "prometheus.yml"), "w") as f:
        f.write(config)
    shutil.copy(os.path.join(ROOT, "deploy", "prometheus", "rules.yml"), prom_dir)
    checked = subprocess.run([PROMTOOL, "check", "config", os.path.join(prom_dir, "prometheus.yml")], capture_output=True, text=True)
    check(checked.returncode == 0, f"promtool check config on the adapted file: exit {checked.returncode}")
    start(
        [
            PROMETHEUS,
            f"--config.file={os.path.join(prom_dir, 'prometheus.yml')}",
            f"--storage.tsdb.path={os.path.join(prom_dir, 'data')}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ],
        "prometheus",
        work,
    )
    prom = Prometheus(prom_port)
    wait_for("Prometheus /-/ready", lambda: get(f"{prom.base}/-/ready")[0] == 200, limit=30)
    up = wait_for("the gateway's target up", lambda: prom.query('up{job="graygate"} == 1'), limit=20)
    check(len(up) == 1 and up[0][0].get("instance") == f"127.0.0.1:{admin}", f"Prometheus scrapes graygate at 127.0.0.1:{admin}")

    # --- 3 000 requests through the 90/10 alias ------------------------------------------------
    # graygate creates a route's series at its first request: 100 requests first, scraped, so
    # that every request of the 3 000 falls between two samples and increase() sees it.
    s, v = drive(data, 100)
    check(s == {200: 100} and v == {"v1": 90, "v2": 10}, f"100 warm-up requests: {s} {v}")
    time.sleep(2.5)
    statuses, versions = {}, {}
    for _ in range(6):
        s, v = drive(data, 500)
        for k, n in s.items():
            statuses[k] = statuses.get(k, 0) + n
        for k, n in v.items():
            versions[k] = versions.get(k, 0) + n
        time.sleep(1)
    check(statuses == {200: 3000}, f"3000 requests through /hello-prod, all 200: {statuses}")
    check(versions == {"v1": 2700, "v2": 300}, f"the gateway split them exactly 90/10: {versions}")
    time.sleep(2.5)  # two more scrapes

    selector = 'graygate_requests_total{job="graygate", function="hello", target="prod"}'
    # Over 2 minutes (longer than the run so far): increase() counts the 3 000 and extrapolates
    # them by up to half a scrape interval at each end of the ~10 s it has samples for.
    increase = prom.by(f"sum by (version) (increase({selector}[2m]))", "version")
    total = sum(increase.values())
    check(2950 <= total <= 3600, f"increase() over 2 minutes counts {total:.0f} requests (3000 sent after 100)")
    check(abs(share(increase, "v2") - 10) <= 2, f"increase() by version: v2 {share(increase, 'v2'):.2f} % (configured 10 %): {increase}")
    rates = prom.by(f"sum by (version) (rate({selector}[1m]))", "version")
    check(abs(share(rates, "v2") - 10) <= 2 and abs(share(rates, "v1") - 90) <= 2,
          f"rate() by version: v1 {share(rates, 'v1'):.2f} %, v2 {share(rates, 'v2'):.2f} % ({rates})")
    exact = prom.by(selector, "version")
    check(exact == {"v1": 2790.0, "v2": 310.0}, f"the scraped counters themselves: {exact}")

    rule = 'function_alias_version:graygate_requests:share5m{job="graygate", function="hello", alias="prod"}'
    observed = wait_for("the share recording rule", lambda: prom.by(rule, "version") if len(prom.query(rule)) == 2 else None)
    check(abs(observed["v1"] - 90) <= 2 and abs(observed["v2"] - 10) <= 2,
          f"recording rule share5m: v1 {observed['v1']:.2f} %, v2 {observed['v2']:.2f} %")
    weights = prom.by('function_alias_version:graygate_alias_weight_percent:avg{function="hello", alias="prod"}', "version")
    check(weights == {"v1": 90.0, "v2": 10.0}, f"recording rule weight: {weights}")
    primary = prom.by('function_alias_version:graygate_alias_primary:weight{function="hello", alias="prod"}', "version")
    check(primary == {"v1": 90.0}, f"recording rule primary: {primary}")
    errors = prom.by('function_alias_version:graygate_request_errors:ratio_rate5m{function="hello", alias="prod"}', "version")
    check(errors == {"v1": 0.0, "v2": 0.0}, f"recording rule error ratio, 0 for versions that never failed: {errors}")
    p99 = prom.by('function_alias_version:graygate_request_duration_seconds:p99_5m{function="hello", alias="prod"}', "version")
    check(set(p99) == {"v1", "v2"} and all(0 < v < 1 for v in p99.values()), f"recording rule p99 by alias version: {p99}")
    noisy = [a for a in prom.alerts() if a["labels"]["alertname"].startswith("Graygate")]
    check(not noisy, f"a healthy fleet raises no graygate alert, pending or firing: {[a['labels'] for a in noisy]}")

    # --- a rejected routes file ----------------------------------------------------------------
    save(routes_path, routes(up1, up2, broken=True))
    fired = wait_for("GraygateConfigReloadFailed", lambda: prom.alert("GraygateConfigReloadFailed", instance=f"127.0.0.1:{admin}"), limit=20)
    check(bool(fired), f"an invalid routes file fires GraygateConfigReloadFailed: {fired[0]['annotations']['summary']}")
    s, v = drive(data, 100)
    check(s == {200: 100} and v == {"v1": 90, "v2": 10}, f"the previous routes keep serving: {s} {v}")
    save(routes_path, routes(up1, up2).replace("project_id: p1", "project_id: p1\n# fixed"))

    # --- an upstream that dies under traffic ---------------------------------------------------
    backend2.send_signal(signal.SIGTERM)
    backend2.wait(timeout=10)
    s, v = drive(data, 300)
    check(s.get(200, 0) >= 290 and v.get("v1", 0) >= 290, f"v2 down: its share goes to v1 after the ejection: {s} {v}")
    fired = wait_for("GraygateUpstreamEjected", lambda: prom.alert("GraygateUpstreamEjected", upstream=f"127.0.0.1:{up2}"), limit=20)
    check(bool(fired), f"the ejection fires GraygateUpstreamEjected: {fired[0]['annotations']['summary']}")
    time.sleep(2)

    # --- the dashboard's queries against the same Prometheus -----------------------------------
    dashboard, queries = dashboard_queries()
    for where, expr in queries:
        result = prom.query(grafana_to_promql(expr))
        check(len(result) > 0, f"dashboard {where} returns {len(result)} series")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        definition = grafana_to_promql(variable["definition"])
        metric, label = definition.removeprefix("label_values(").removesuffix(")").rsplit(",", 1)
        status, body = get(f"{prom.base}/api/v1/label/{label.strip()}/values?" + urllib.parse.urlencode({"match[]": metric}))
        values = json.loads(body)["data"] if status == 200 else []
        expected = {"job": "graygate", "function": "hello"}[variable["name"]]
        check(expected in values, f"dashboard variable ${variable['name']} lists {values}")

    # --- promtool check metrics on a live scrape -----------------------------------------------
    status, text = get(f"http://127.0.0.1:{admin}/metrics")
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True, text=True)
    names = {line.split("{")[0].split(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
    check(status == 200 and lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(),
          f"promtool check metrics: clean on a scrape of {len(names)} series names {lint.stdout}{lint.stderr}")
    for name in ("graygate_upstream_ejections_total", "graygate_alias_fallback_total", "graygate_upstream_errors_total"):
        check(name in names, f"the linted scrape includes {name}")


if __name__ == "__main__":
    sys.exit(main())
