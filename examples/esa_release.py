"""ESA's own release flow driven by the official Alibaba Cloud SDK (alibabacloud-esa20240910),
unmodified, against graygate:

  1. commit the routine's staging code as a new code version;
  2. deploy it to 10 % of staging (90 % stays on the code version production runs);
  3. publish it to production (and staging), checking what each serves;
  4. delete the old code version, refused while something still deploys it.

Environment (what `graygate demo` prints): ADMIN, GW, AK, SK. ROUTINE defaults to the
demo's "edge", whose staging code (latest) is newer than the code version in production.
"""
import collections
import json
import os
import sys
import urllib.request
from urllib.parse import urlsplit

from alibabacloud_esa20240910 import models
from alibabacloud_esa20240910.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils_models import Config

ENV = os.environ
ROUTINE = ENV.get("ROUTINE", "edge")
client = Client(Config(access_key_id=ENV["AK"], access_key_secret=ENV["SK"],
                       endpoint=urlsplit(ENV["ADMIN"]).netloc, protocol="http"))


def step(text):
    print(f"[esa] {text}", flush=True)


def check(condition, what):
    if not condition:
        sys.exit(f"[esa] FAILED: {what}")


def served(env, n=100):
    """Which build answered each of n requests to the env's trigger (the demo backends name themselves)."""
    seen = collections.Counter()
    for _ in range(n):
        with urllib.request.urlopen(f"{ENV['GW']}/{ROUTINE}-{env}", timeout=5) as answer:
            seen[json.loads(answer.read())["version"]] += 1
    return dict(seen)


def deployed():
    """{env: [(code version, percentage)]} as GetRoutine reports it."""
    routine = client.get_routine(models.GetRoutineRequest(name=ROUTINE)).body
    return {e.env: [(c.code_version, c.percentage) for c in e.code_deploy.code_versions] for e in routine.envs}


def publish(code_version, env):
    request = models.PublishRoutineCodeVersionRequest(name=ROUTINE, code_version=code_version, env=env)
    client.publish_routine_code_version(request)


old = deployed()["production"][0][0]
before = served("production")
step(f"production runs code version {old}: {before}")

# 1. The staging code becomes a code version.
commit = models.CommitRoutineStagingCodeRequest(name=ROUTINE, code_description="the new build")
new = client.commit_routine_staging_code(commit).body.code_version
step(f"committed staging code as code version {new}")

# 2. Gray it on staging: the first code version named is the env's own, the rest its gray.
deployment = models.CreateRoutineCodeDeploymentRequest(name=ROUTINE, env="staging", strategy="percentage", code_versions=[
    models.CreateRoutineCodeDeploymentRequestCodeVersions(code_version=old, percentage=90),
    models.CreateRoutineCodeDeploymentRequestCodeVersions(code_version=new, percentage=10),
])
answer = client.create_routine_code_deployment(deployment).body
split = served("staging")
step(f"staging deployment {answer.deployment_id}: 90/10, served {split}")
check(len(split) == 2 and min(split.values()) < 30, f"about 90/10 on staging, got {split}")

# While production still runs the old code version, ESA refuses to delete it.
try:
    client.delete_routine_code_version(models.DeleteRoutineCodeVersionRequest(name=ROUTINE, code_version=old))
    sys.exit(f"[esa] FAILED: {old} was deleted while deployed")
except ClientException as error:
    check(error.code == "DependedByOthers", f"DependedByOthers, got {error.code}")
    step(f"deleting {old} while deployed: {error.status_code} {error.code}")

# 3. Publish to production, then staging, and check what each serves.
for env in ("production", "staging"):
    publish(new, env)
    split = served(env)
    step(f"{env} published on {new}: {split}")
    check(len(split) == 1 and split != before, f"{env} serves the new build only, got {split}")

# 4. The old code version is no longer deployed anywhere: delete it.
listed = client.list_routine_code_versions(models.ListRoutineCodeVersionsRequest(name=ROUTINE)).body
step("code versions: " + ", ".join(f"{c.code_version} [{c.deploy_env or '-'}]" for c in listed.code_versions))
try:
    client.delete_routine_code_version(models.DeleteRoutineCodeVersionRequest(name=ROUTINE, code_version=old))
except ClientException as error:
    sys.exit(f"[esa] FAILED: deleting {old}: {error.status_code} {error.code} {error.message}")
remaining = [c.code_version for c in client.list_routine_code_versions(
    models.ListRoutineCodeVersionsRequest(name=ROUTINE)).body.code_versions]
check(old not in remaining and new in remaining, f"only {new} left, got {remaining}")
step(f"code version {old} deleted: release done")
