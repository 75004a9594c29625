"""A gray release driven by the official FunctionGraph SDK (huaweicloudsdkfunctiongraph),
unmodified, against graygate: what a release pipeline runs after its build step.

  1. find the function (or bootstrap it), point latest at the new build, read its digest;
  2. publish a version under that digest: if latest moved since, graygate refuses;
  3. create the alias at 10 % on the new version, with an APIG trigger;
  4. smoke-test the new version through invoke_function, the alias through invoke_url;
  5. shift to 50 %, then 100 %, and delete the version it replaced.

Environment (what `graygate demo` prints): ADMIN, AK, SK, PROJECT, and B1/B2 (the current
and the new build's upstreams). REGION defaults to the demo's "local"; FUNCTION to testapig.
"""
import collections
import json
import os
import sys
import urllib.request

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    CreateVersionAliasRequest,
    CreateVersionAliasRequestBody,
    DeleteFunctionRequest,
    FunctionGraphClient,
    InvokeFunctionRequest,
    ListFunctionsRequest,
    ListFunctionTriggersRequest,
    ListFunctionVersionsRequest,
    ShowFunctionCodeRequest,
    TriggerEventDataRequestBody,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
    UpdateVersionAliasRequest,
    UpdateVersionAliasRequestBody,
)

ENV = os.environ
PACKAGE, NAME, ALIAS = "default", ENV.get("FUNCTION", "testapig"), "prod"
URN = f"urn:fss:{ENV.get('REGION', 'local')}:{ENV['PROJECT']}:function:{PACKAGE}:{NAME}"
LATEST = URN + ":latest"
CURRENT_BUILD, NEW_BUILD = ENV["B1"], ENV["B2"]

client = (
    FunctionGraphClient.new_builder()
    .with_credentials(BasicCredentials(ENV["AK"], ENV["SK"], ENV["PROJECT"]))
    .with_endpoints([ENV["ADMIN"]])
    .build()
)


def step(text):
    print(f"[functiongraph] {text}", flush=True)


def check(condition, what):
    if not condition:
        sys.exit(f"[functiongraph] FAILED: {what}")


def versions():
    listed = client.list_function_versions(ListFunctionVersionsRequest(function_urn=LATEST))
    return [v.version for v in listed.versions]


def publish(version):
    """Publishes latest as `version`, guarded by the digest of the code read just before."""
    digest = client.show_function_code(ShowFunctionCodeRequest(function_urn=LATEST)).digest
    body = CreateFunctionVersionRequestBody(version=version, digest=digest, description=f"release {version}")
    client.create_function_version(CreateFunctionVersionRequest(function_urn=LATEST, body=body))
    step(f"published {version} (digest {digest[:12]}…)")


def set_code(upstream):
    body = UpdateFunctionCodeRequestBody(code_type="url", code_url=upstream)
    client.update_function_code(UpdateFunctionCodeRequest(function_urn=LATEST, body=body))


def set_alias(version, weights):
    body = UpdateVersionAliasRequestBody(version=version, additional_version_weights=weights)
    client.update_version_alias(UpdateVersionAliasRequest(function_urn=LATEST, alias_name=ALIAS, body=body))


def served(url, n=100):
    """Which build answered each of n requests to url (the demo backends name themselves)."""
    seen = collections.Counter()
    for _ in range(n):
        with urllib.request.urlopen(url, timeout=5) as answer:
            seen[json.loads(answer.read())["version"]] += 1
    return dict(seen)


# 1. Find the function, or bootstrap it on the build that serves today.
found = client.list_functions(ListFunctionsRequest(package_name=PACKAGE, func_name=NAME))
if found.count == 0:
    client.create_function(CreateFunctionRequest(body=CreateFunctionRequestBody(
        func_name=NAME, package=PACKAGE, runtime="http", code_type="url", code_url=CURRENT_BUILD,
        timeout=10, handler="bootstrap", memory_size=128)))
    step(f"created {NAME}")
else:
    step(f"found {NAME}")

# What serves today becomes v1 (a first run); the alias starts there.
if "v1" not in versions():
    set_code(CURRENT_BUILD)
    publish("v1")
    body = CreateVersionAliasRequestBody(name=ALIAS, version="v1")
    client.create_version_alias(CreateVersionAliasRequest(function_urn=LATEST, body=body))
    event = TriggerEventDataRequestBody(env_name="RELEASE", req_method="ANY", protocol="HTTPS", type=1, auth="NONE")
    trigger = client.create_function_trigger(CreateFunctionTriggerRequest(
        function_urn=f"{URN}:!{ALIAS}",
        body=CreateFunctionTriggerRequestBody(trigger_type_code="APIG", trigger_status="ACTIVE", event_data=event)))
    step(f"alias {ALIAS} on v1, trigger {trigger.event_data.path}")

# Where clients reach the alias: its trigger's invoke_url (graygate's public URL).
triggers = client.list_function_triggers(ListFunctionTriggersRequest(function_urn=URN)).body
invoke_url = next(t.event_data.invoke_url for t in triggers if t.event_data.path == f"/{NAME}-{ALIAS}")

# 2. The build step pointed latest at the new build; publish exactly what was tested.
set_code(NEW_BUILD)
publish("v2")

# 3. Ten percent of the alias to v2.
set_alias("v1", {"v2": 10})
split = served(invoke_url)
step(f"10 %: {split}")
check(set(split) == {"v1", "v2"} and split["v2"] < 30, f"about 10 % on v2, got {split}")

# 4. Smoke tests: the version itself, then the alias through invoke_function.
answer = client.invoke_function(InvokeFunctionRequest(function_urn=URN + ":v2", body={"smoke": True}))
check(answer.status == 200 and json.loads(answer.result)["version"] == "v2", f"v2 answers, got {answer.result}")
step(f"invoke_function {NAME}:v2 answered {answer.status} (request {answer.request_id})")

# 5. Shift the traffic, then retire v1.
set_alias("v1", {"v2": 50})
split = served(invoke_url)
step(f"50 %: {split}")
check(set(split) == {"v1", "v2"}, f"both versions at 50 %, got {split}")
set_alias("v2", {})
split = served(invoke_url)
step(f"100 %: {split}")
check(split == {"v2": 100}, f"all traffic on v2, got {split}")
try:
    client.delete_function(DeleteFunctionRequest(function_urn=URN + ":v1"))
except ClientRequestException as error:
    sys.exit(f"[functiongraph] FAILED: deleting v1: {error.status_code} {error.error_code} {error.error_msg}")
check(versions() == ["latest", "v2"], f"v1 deleted, versions are {versions()}")
step("v1 deleted: release done")
