#!/usr/bin/env python3
"""deploy/Dockerfile without a container engine: its build stage replayed, its runtime stage run.

No Docker engine runs on this machine (only the client), so this does by hand what `docker
build` and `docker run` would, for the parts that can be done faithfully:

  build     the build stage's COPY instructions copy the same files (through
            deploy/Dockerfile.dockerignore) into a directory standing for its WORKDIR, and its
            RUN commands run there, unchanged: the same `cargo build --release --locked`;
  runtime   the runtime stage's `COPY --from=build` takes the path the build produced into a
            directory standing for the image's root, where ENTRYPOINT must exist; ENTRYPOINT +
            CMD then run from there with the Kubernetes ConfigMap laid out at /etc/graygate as
            the kubelet lays it out (`..data` symlink), and the HEALTHCHECK command must pass
            while graygate runs and fail once it has stopped.

It also checks that the build command is the README's, that USER is the numeric non-root user
the Deployment runs as, and that EXPOSE, the ConfigMap's listeners, the Deployment's container
ports and args agree with the image. What is not replayed: the base images themselves and the
runtime stage's RUN (apt-get, useradd), which need the image's root file system.

Usage: tests/deploy/dockerfile.py   (needs PyYAML; .ci/run uses target/deploy-venv)
The runtime root is left in target/dockerfile/runtime: its usr/local/bin/graygate is the
image's binary, which tests/deploy/prometheus_scrape.py then runs.
"""

import fnmatch
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DOCKERFILE = os.path.join(ROOT, "deploy", "Dockerfile")
DOCKERIGNORE = os.path.join(ROOT, "deploy", "Dockerfile.dockerignore")
WORK = os.path.join(ROOT, "target", "dockerfile")
# Kept between runs (cargo reuses its target/ there); CI starts from a clean checkout.
BUILD_ROOT = os.path.join(WORK, "build")
RUNTIME_ROOT = os.path.join(WORK, "runtime")
BUILD_LIMIT_S = 1500

passed = 0
failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
        print(f"[dockerfile] PASS {what}", flush=True)
    else:
        failed += 1
        print(f"[dockerfile] FAIL {what}", flush=True)
    return ok


def fatal(message):
    print(f"[dockerfile] FAIL {message}", flush=True)
    print(f"dockerfile: {passed} passed, {failed + 1} failed")
    sys.exit(1)


# --- parsing -----------------------------------------------------------------------------------


def instructions(text):
    """(KEYWORD, arguments) in order: comments dropped, continuation lines joined."""
    out, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, rest = current.partition(" ")
        out.append((keyword.upper(), rest.strip()))
        current = ""
    return out


def substitute(value, args):
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), value)


def stages(parsed):
    """Global ARGs and the stages, each {name, base, steps}."""
    args, result = {}, []
    for keyword, rest in parsed:
        if keyword == "ARG" and not result:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = rest.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else str(len(result))
            result.append({"name": name, "base": substitute(words[0], args), "steps": []})
        elif result:
            result[-1]["steps"].append((keyword, rest))
    return args, result


def flags(rest):
    """Leading --name=value flags of COPY or HEALTHCHECK, and what follows them."""
    found, words = {}, rest.split(" ")
    while words and words[0].startswith("--"):
        name, _, value = words.pop(0)[2:].partition("=")
        found[name] = value
    return found, " ".join(words).strip()


def exec_form(rest):
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


def ignored(path, patterns):
    """Whether .dockerignore `patterns` exclude `path` (relative, '/'-separated): last match wins."""
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatch("/".join(parts[: i + 1]), pattern) for i in range(len(parts))):
            excluded = not negate
    return excluded


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=2):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except Exception as error:  # connection refused while starting, etc.
        return None, str(error)


# --- the checks --------------------------------------------------------------------------------


def main():
    text = open(DOCKERFILE).read()
    args, all_stages = stages(instructions(text))
    if len(all_stages) < 2:
        fatal("the Dockerfile has fewer than two stages")
    build = next((s for s in all_stages if s["name"] == "build"), None)
    runtime = all_stages[-1]
    if build is None or build is runtime:
        fatal("no stage named `build` before the runtime stage")

    deployment = yaml.safe_load(open(os.path.join(ROOT, "deploy", "kubernetes", "base", "deployment.yaml")))
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    configmap = yaml.safe_load(open(os.path.join(ROOT, "deploy", "kubernetes", "base", "configmap.yaml")))
    server = yaml.safe_load(configmap["data"]["graygate.yaml"])

    # Bases: a Rust builder and a slim runtime of the same Debian release (same glibc).
    release = args.get("DEBIAN_RELEASE", "")
    check(
        build["base"].startswith("rust:") and build["base"].endswith("-" + release) and release != "",
        f"build stage FROM {build['base']}: the Rust image on Debian {release}",
    )
    check(runtime["base"] == f"debian:{release}-slim", f"runtime stage FROM {runtime['base']}: slim Debian, same release")

    # The build command is the README's (plus --locked: fail on a stale Cargo.lock).
    runs = [rest for keyword, rest in build["steps"] if keyword == "RUN"]
    cargo = [shlex.split(cmd) for run in runs for cmd in re.split(r"&&|;", run) if "cargo build" in cmd]
    readme = open(os.path.join(ROOT, "README.md")).read()
    readme_builds = [shlex.split(m) for m in re.findall(r"^\s*(cargo build --release[^\n#`]*)", readme, re.M)]
    if not check(len(cargo) == 1 and bool(readme_builds), "one cargo build in the build stage, and one in README.md"):
        fatal("cannot compare build commands")
    dockerfile_flags = set(cargo[0][2:])
    for readme_build in readme_builds:
        extra = dockerfile_flags - set(readme_build[2:])
        check(
            set(readme_build[2:]) <= dockerfile_flags and extra <= {"--locked"},
            f"`{' '.join(cargo[0])}` is README's `{' '.join(readme_build)}`"
            + (" plus --locked" if extra else ""),
        )
    check("--locked" in dockerfile_flags, "the image build refuses a Cargo.lock that does not match Cargo.toml")

    # Build stage: COPY through the .dockerignore, then RUN, in a directory standing for WORKDIR.
    patterns = [
        line.strip() for line in open(DOCKERIGNORE).read().splitlines() if line.strip() and not line.startswith("#")
    ]
    os.makedirs(BUILD_ROOT, exist_ok=True)
    for entry in os.listdir(BUILD_ROOT):
        if entry != "src":
            shutil.rmtree(os.path.join(BUILD_ROOT, entry), ignore_errors=True)
    workdir = "/"
    for keyword, rest in build["steps"]:
        if keyword == "WORKDIR":
            workdir = os.path.join(workdir, rest)
            here = BUILD_ROOT + workdir
            os.makedirs(here, exist_ok=True)
            # A fresh context each run, but keep cargo's target/ (only a cache).
            for entry in os.listdir(here):
                if entry != "target":
                    path = os.path.join(here, entry)
                    shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
        elif keyword == "COPY":
            options, paths = flags(rest)
            *sources, dest = shlex.split(paths)
            if not check(not options, f"COPY {paths}: from the build context"):
                continue
            target = os.path.join(BUILD_ROOT + workdir, dest)
            for source in sources:
                inside = not ignored(source, patterns) and os.path.exists(os.path.join(ROOT, source))
                if not check(inside, f"COPY source {source} exists and passes Dockerfile.dockerignore"):
                    continue
                origin = os.path.join(ROOT, source)
                if os.path.isdir(origin):
                    shutil.copytree(origin, target, dirs_exist_ok=True)  # a directory's contents
                else:
                    os.makedirs(target if dest.endswith("/") else os.path.dirname(target), exist_ok=True)
                    shutil.copy2(origin, os.path.join(target, os.path.basename(source)) if dest.endswith("/") else target)
        elif keyword == "RUN":
            print(f"[dockerfile] build stage: RUN {rest} (in {BUILD_ROOT + workdir})", flush=True)
            started = time.monotonic()
            # The rust image sets none of these: a target dir or flags from this machine would
            # build something else, somewhere else.
            env = {
                k: v
                for k, v in os.environ.items()
                if not (k in ("CARGO_TARGET_DIR", "RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS", "RUSTC_WRAPPER")
                        or k.startswith(("CARGO_BUILD_", "CARGO_PROFILE_")))
            }
            result = subprocess.run(["bash", "-c", rest], cwd=BUILD_ROOT + workdir, env=env, timeout=BUILD_LIMIT_S)
            if not check(result.returncode == 0, f"RUN {rest}: exit {result.returncode} in {time.monotonic() - started:.0f} s"):
                fatal("the build stage failed")

    # Runtime stage: COPY --from=build, then ENTRYPOINT must exist in the image's root.
    shutil.rmtree(RUNTIME_ROOT, ignore_errors=True)
    os.makedirs(RUNTIME_ROOT)
    steps = {keyword: rest for keyword, rest in runtime["steps"]}
    for keyword, rest in runtime["steps"]:
        if keyword != "COPY":
            continue
        options, paths = flags(rest)
        source, dest = shlex.split(paths)
        built = BUILD_ROOT + source
        check(options.get("from") == "build", f"runtime COPY {paths} comes from the build stage")
        if not check(os.path.isfile(built), f"{source} exists after the build stage"):
            fatal("the runtime stage would not build")
        os.makedirs(os.path.dirname(RUNTIME_ROOT + dest), exist_ok=True)
        shutil.copy2(built, RUNTIME_ROOT + dest)

    entrypoint = exec_form(steps["ENTRYPOINT"])
    cmd = exec_form(steps["CMD"])
    binary = RUNTIME_ROOT + entrypoint[0]
    if not check(os.access(binary, os.X_OK), f"ENTRYPOINT {entrypoint[0]} is an executable in the image"):
        fatal("no entrypoint")
    version = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=30)
    cargo_version = re.search(r'^version = "([^"]+)"', open(os.path.join(ROOT, "Cargo.toml")).read(), re.M).group(1)
    check(
        version.returncode == 0 and version.stdout.strip() == f"graygate {cargo_version}",
        f"the image's binary says `{version.stdout.strip()}` (Cargo.toml: {cargo_version})",
    )

    # The image and the Kubernetes manifests agree.
    check(container.get("args") == cmd, f"the Deployment's args {container.get('args')} are the image's CMD {cmd}")
    config_path = cmd[cmd.index("--config") + 1] if "--config" in cmd else ""
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    check(os.path.dirname(config_path) in mounts, f"CMD's --config {config_path} lies in a mounted directory {sorted(mounts)}")
    user = steps.get("USER", "")
    uid = user.split(":")[0]
    created = re.search(r"useradd[^&]*--uid (\d+)", steps.get("RUN", ""))
    check(uid.isdigit() and uid != "0", f"USER {user} is numeric and not root")
    check(created is not None and created.group(1) == uid, f"the runtime stage creates user {uid}")
    check(
        str(pod["securityContext"].get("runAsUser")) == uid and pod["securityContext"].get("runAsNonRoot") is True,
        f"the Deployment runs as the image's user {uid} with runAsNonRoot",
    )
    exposed = {int(p.split("/")[0]) for p in steps.get("EXPOSE", "").split()}
    listeners = {int(server["listen"].rsplit(":", 1)[1]), int(server["admin_listen"].rsplit(":", 1)[1])}
    container_ports = {p["containerPort"] for p in container["ports"]}
    check(
        exposed == listeners == container_ports,
        f"EXPOSE {sorted(exposed)}, the ConfigMap's listeners {sorted(listeners)} and the container ports "
        f"{sorted(container_ports)} agree",
    )

    # Run ENTRYPOINT + CMD as the image would, with /etc/graygate laid out as the kubelet does.
    etc = RUNTIME_ROOT + os.path.dirname(config_path)
    stamp = "..2026_01_01_00_00_00.000000001"
    os.makedirs(os.path.join(etc, stamp))
    data, admin = free_port(), free_port()
    admin_in_image = int(server["admin_listen"].rsplit(":", 1)[1])
    for name, content in configmap["data"].items():
        if name == "graygate.yaml":
            content = content.replace(server["listen"], f"127.0.0.1:{data}")
            content = content.replace(server["admin_listen"], f"127.0.0.1:{admin}")
        open(os.path.join(etc, stamp, name), "w").write(content)
    os.symlink(stamp, os.path.join(etc, "..data"))
    for name in configmap["data"]:
        os.symlink(os.path.join("..data", name), os.path.join(etc, name))
    argv = [binary] + [RUNTIME_ROOT + a if a.startswith("/etc/") else a for a in cmd]
    env = dict(os.environ, GRAYGATE_ADMIN_TOKEN="dockerfile-test-token")
    env.update(dict(pair.split("=", 1) for pair in shlex.split(steps.get("ENV", ""))))
    logs = open(os.path.join(WORK, "serve.log"), "w")
    gateway = subprocess.Popen(argv, cwd=RUNTIME_ROOT + steps.get("WORKDIR", "/"), env=env, stdout=logs, stderr=logs)
    try:
        deadline = time.monotonic() + 15
        status, body = None, ""
        while time.monotonic() < deadline and gateway.poll() is None:
            status, body = http_get(f"http://127.0.0.1:{admin}/readyz")
            if status == 200:
                break
            time.sleep(0.1)
        ready = check(status == 200 and body.startswith("ready"), f"ENTRYPOINT + CMD serves the ConfigMap's config: /readyz {status} {body.strip()}")
        if not ready:
            print(open(os.path.join(WORK, "serve.log")).read())

        options, healthcheck = flags(steps["HEALTHCHECK"])
        probe = exec_form(healthcheck.removeprefix("CMD").strip())
        script = probe[-1]
        check(
            f"127.0.0.1/{admin_in_image}" in script and "GET /healthz " in script,
            f"HEALTHCHECK asks /healthz on the admin port {admin_in_image}",
        )
        check("interval" in options and "timeout" in options, f"HEALTHCHECK has an interval and a timeout: {options}")
        probe = probe[:-1] + [script.replace(f"127.0.0.1/{admin_in_image}", f"127.0.0.1/{admin}")]
        healthy = subprocess.run(probe, timeout=10, capture_output=True)
        check(ready and healthy.returncode == 0, f"HEALTHCHECK passes while graygate runs (exit {healthy.returncode})")

        gateway.send_signal(signal.SIGTERM)
        code = gateway.wait(timeout=40)
        check(code == 0, f"SIGTERM (STOPSIGNAL {steps.get('STOPSIGNAL')}) stops it cleanly: exit {code}")
        stopped = subprocess.run(probe, timeout=10, capture_output=True)
        check(stopped.returncode != 0, f"HEALTHCHECK fails once graygate has stopped (exit {stopped.returncode})")
    finally:
        if gateway.poll() is None:
            gateway.kill()
            gateway.wait()

    print(f"[dockerfile] the image's binary: {binary}")
    print(f"dockerfile: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
