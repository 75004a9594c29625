"""Fixtures: a real graygate with three real backends, all on 127.0.0.1, in two modes.

- file: one graygate process over a routes file;
- fleet: a real etcd (Debian's etcd-server) and two graygate replicas over one prefix; the
  SDKs write through replica A and the data plane is checked on replica B (once B serves
  the revision A wrote, which it does within milliseconds).

The gateway binary comes from $GRAYGATE_BIN (default: target/debug/graygate, which
`cargo build` or `cargo test` produces); $INTEROP_MODES picks the modes (default
"file,fleet"). Each test module gets a fresh gateway per mode, so tests do not depend on
each other's changes.
"""
import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
PROJECT = "0123456789abcdef0123456789abcdef"
REGION = "local"
HUAWEI_AK, HUAWEI_SK = "HPUAEXAMPLEAK0000001", "interop-huawei-secret-key-0123456789"
ALIBABA_AK, ALIBABA_SK = "LTAI5tEXAMPLEAccessKey01", "interop-alibaba-secret-0123456789ab"


class Backend(http.server.BaseHTTPRequestHandler):
    """Answers every request with its version name (the server's `version` attribute)."""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = self.server.version.encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802 (an invocation: the body is read, the answer is the same)
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.do_GET()

    def log_message(self, *args):
        pass


def start_backend(version):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    server.version = version
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


_NEXT_PORT = [os.getpid() * 7919 % 12000]


def free_port():
    """A loopback port below the kernel's ephemeral range (32768 and up): an ephemeral port
    found free can be handed to an outgoing connection before the server meant for it binds
    it; one below that range only to an explicit bind."""
    for _ in range(12000):
        port = 20000 + _NEXT_PORT[0] % 12000
        _NEXT_PORT[0] += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port in 20000..32000")


def binary():
    return os.environ.get("GRAYGATE_BIN", str(ROOT / "target" / "debug" / "graygate"))


def clean_env(**extra):
    env = dict(os.environ, INTEROP_HUAWEI_SK=HUAWEI_SK, INTEROP_ALIBABA_SK=ALIBABA_SK, RUST_LOG="warn", **extra)
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(proxy, None)
    return env


AUDIT_TOKEN = "interop-audit-reader-token"
ADMIN = {"keys": [
    {"access_key": HUAWEI_AK, "secret_key": "${INTEROP_HUAWEI_SK}"},
    {"access_key": ALIBABA_AK, "secret_key": "${INTEROP_ALIBABA_SK}"},
], "tokens": [AUDIT_TOKEN]}


def audit(admin_port, **query):
    """The audit trail as a replica shows it, newest first."""
    text = "&".join(f"{k}={v}" for k, v in query.items())
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/graygate/v1/audit?{text}",
                                     headers={"X-Auth-Token": AUDIT_TOKEN})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["records"]


def wait_until(what, condition, process=None, seconds=20):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not in time")
        time.sleep(0.02)


def readyz(admin_port):
    """(status, body) of /readyz."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/readyz", timeout=1) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def revision(admin_port):
    _, body = readyz(admin_port)
    return int(body.split("revision=")[1].split()[0])


class Gateway:
    """The data plane at `data_port`, the management API at `admin_port`."""

    def __init__(self, tmp, mode):
        self.mode = mode
        self.tmp = tmp
        self.processes = []
        self.etcd = None
        self.backends = {v: start_backend(v) for v in ("build-a", "build-b", "build-c")}
        routes = {
            "project_id": PROJECT,
            "region": REGION,
            "functions": [{"name": "hello", "package": "default", "upstream": self.url("build-a")}],
        }
        (tmp / "routes.json").write_text(json.dumps(routes))
        if mode == "file":
            self.data_port, self.admin_port = free_port(), free_port()
            self.reader_admin_port = self.admin_port
            self.serve("gateway", {"routes": "routes.json"}, self.data_port, self.admin_port)
        else:
            self.start_etcd()
            store = {"etcd": {"endpoints": [self.etcd_endpoint], "prefix": "/interop"}}
            (tmp / "push.yaml").write_text(json.dumps(store))
            push = subprocess.run([binary(), "routes", "push", str(tmp / "routes.json"), "--config", str(tmp / "push.yaml")],
                                  env=clean_env(), capture_output=True, text=True, timeout=30)
            assert push.returncode == 0, push.stdout + push.stderr
            writer_data, self.admin_port = free_port(), free_port()
            self.data_port, self.reader_admin_port = free_port(), free_port()
            for name, data, admin in (("a", writer_data, self.admin_port), ("b", self.data_port, self.reader_admin_port)):
                etcd = dict(store["etcd"], snapshot=f"{name}.snapshot.json")
                self.serve(name, {"etcd": etcd}, data, admin, GRAYGATE_REPLICA_ID=name)

    def start_etcd(self):
        etcd = shutil.which(os.environ.get("ETCD_BIN", "etcd"))
        if etcd is None:
            raise RuntimeError("fleet mode needs etcd (Debian: apt-get install etcd-server), or INTEROP_MODES=file")
        client, peer = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
        log = open(self.tmp / "etcd.log", "w")
        self.etcd = subprocess.Popen(
            [etcd, "--name", "default", "--data-dir", str(self.tmp / "etcd"),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"default={peer}"],
            stdout=log, stderr=log)
        self.etcd_endpoint = client

        def healthy():
            with urllib.request.urlopen(f"{client}/health", timeout=1) as response:
                return b"true" in response.read()
        wait_until("etcd healthy", healthy, self.etcd)

    def serve(self, name, store, data_port, admin_port, **env):
        config = dict(store, listen=f"127.0.0.1:{data_port}", admin_listen=f"127.0.0.1:{admin_port}", admin=ADMIN)
        path = self.tmp / f"{name}.yaml"
        path.write_text(json.dumps(config))
        process = subprocess.Popen([binary(), "serve", "--config", str(path)], env=clean_env(**env))
        self.processes.append(process)
        wait_until(f"graygate {name} ready", lambda: readyz(admin_port)[0] == 200, process)

    def url(self, version):
        return f"http://127.0.0.1:{self.backends[version].server_address[1]}"

    def converge(self):
        """In a fleet, waits until the replica that serves the data plane has what was written."""
        if self.mode == "fleet":
            written = revision(self.admin_port)
            wait_until("replica b caught up", lambda: revision(self.reader_admin_port) >= written, seconds=5)

    def get(self, path, headers=None):
        """(status, body) of a data-plane request."""
        self.converge()
        request = urllib.request.Request(f"http://127.0.0.1:{self.data_port}{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def split(self, path, n=100):
        counts = {}
        for _ in range(n):
            status, body = self.get(path)
            assert status == 200, body
            counts[body] = counts.get(body, 0) + 1
        return counts

    def stop(self):
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=20)
            finally:
                if process.poll() is None:
                    process.kill()
        if self.etcd is not None:
            self.etcd.kill()
            self.etcd.wait(timeout=20)
        for server in self.backends.values():
            server.shutdown()


MODES = [m for m in os.environ.get("INTEROP_MODES", "file,fleet").split(",") if m]


@pytest.fixture(scope="module", params=MODES)
def gateway(request, tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp(f"graygate-{request.param}"), request.param)
    yield gw
    gw.stop()
