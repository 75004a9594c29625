"""Fixtures: a real graygate process with two real backends, all on 127.0.0.1.

The gateway binary comes from $GRAYGATE_BIN (default: target/debug/graygate, which
`cargo build` or `cargo test` produces). Each test module gets a fresh gateway over a
fresh routes file, so tests do not depend on each other's changes.
"""
import http.server
import json
import os
import pathlib
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

    def log_message(self, *args):
        pass


def start_backend(version):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Backend)
    server.version = version
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Gateway:
    def __init__(self, tmp):
        self.backends = {v: start_backend(v) for v in ("build-a", "build-b", "build-c")}
        self.data_port, self.admin_port = free_port(), free_port()
        self.routes = tmp / "routes.yaml"
        self.routes.write_text(json.dumps({
            "project_id": PROJECT,
            "region": REGION,
            "functions": [{"name": "hello", "package": "default", "upstream": self.url("build-a")}],
        }))
        (tmp / "graygate.yaml").write_text(json.dumps({
            "listen": f"127.0.0.1:{self.data_port}",
            "admin_listen": f"127.0.0.1:{self.admin_port}",
            "routes": "routes.yaml",
            "admin": {"keys": [
                {"access_key": HUAWEI_AK, "secret_key": "${INTEROP_HUAWEI_SK}"},
                {"access_key": ALIBABA_AK, "secret_key": "${INTEROP_ALIBABA_SK}"},
            ]},
        }))
        binary = os.environ.get("GRAYGATE_BIN", str(ROOT / "target" / "debug" / "graygate"))
        env = dict(os.environ, INTEROP_HUAWEI_SK=HUAWEI_SK, INTEROP_ALIBABA_SK=ALIBABA_SK, RUST_LOG="warn")
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.pop(proxy, None)
        self.process = subprocess.Popen([binary, "serve", "--config", str(tmp / "graygate.yaml")], env=env)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.admin_port}/readyz", timeout=1).read()
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("graygate did not become ready")
                time.sleep(0.05)

    def url(self, version):
        return f"http://127.0.0.1:{self.backends[version].server_address[1]}"

    def get(self, path, headers=None):
        """(status, body) of a data-plane request."""
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
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        for server in self.backends.values():
            server.shutdown()


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    gw = Gateway(tmp_path_factory.mktemp("graygate"))
    yield gw
    gw.stop()
