"""A release pipeline on the official huaweicloudsdkfunctiongraph SDK, unmodified: it
bootstraps a function, publishes the code it tested (by digest), grays 10 % of an alias onto
it, smoke-tests it through invoke_function and the trigger's invoke_url, raises the weight,
deletes the version it replaced, and finally tears everything down. Each refusal is asserted
with FunctionGraph's own status and code, and leaves the routing as it was.

Tests run in file order and share one gateway per mode, like the steps of one pipeline run.
"""
import hashlib
import urllib.request

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    BatchDeleteFunctionTriggersRequest,
    CreateFunctionRequest,
    CreateFunctionRequestBody,
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    CreateVersionAliasRequest,
    CreateVersionAliasRequestBody,
    DeleteFunctionRequest,
    DeleteVersionAliasRequest,
    InvokeFunctionRequest,
    ListFunctionsRequest,
    ListFunctionTriggersRequest,
    ListFunctionVersionsRequest,
    ShowFunctionCodeRequest,
    ShowFunctionConfigRequest,
    TriggerEventDataRequestBody,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
    UpdateFunctionConfigRequest,
    UpdateFunctionConfigRequestBody,
    UpdateTriggerRequest,
    UpdateTriggerRequestBody,
    UpdateVersionAliasRequest,
    UpdateVersionAliasRequestBody,
)

from conftest import PROJECT, REGION
from test_functiongraph_sdk import client

URN = f"urn:fss:{REGION}:{PROJECT}:function:retail:shop"
LATEST = URN + ":latest"


def refused(call):
    """(status, FunctionGraph error code) of a call that must fail."""
    with pytest.raises(ClientRequestException) as error:
        call()
    assert error.value.request_id
    return error.value.status_code, error.value.error_code


def create(gateway, **overrides):
    fields = dict(func_name="shop", package="retail", runtime="http", code_type="url", code_url=gateway.url("build-a"),
                  timeout=10, handler="bootstrap", memory_size=128)
    fields.update(overrides)
    return client(gateway).create_function(CreateFunctionRequest(body=CreateFunctionRequestBody(**fields)))


def digest_of(gateway):
    return client(gateway).show_function_code(ShowFunctionCodeRequest(function_urn=LATEST)).digest


def publish(gateway, version, digest):
    body = CreateFunctionVersionRequestBody(version=version, digest=digest)
    return client(gateway).create_function_version(CreateFunctionVersionRequest(function_urn=LATEST, body=body))


def set_alias(gateway, version, weights):
    body = UpdateVersionAliasRequestBody(version=version, additional_version_weights=weights)
    request = UpdateVersionAliasRequest(function_urn=LATEST, alias_name="prod", body=body)
    return client(gateway).update_version_alias(request)


def trigger_id(gateway):
    listed = client(gateway).list_function_triggers(ListFunctionTriggersRequest(function_urn=URN))
    return [t.trigger_id for t in listed.body if t.event_data.path == "/shop-prod"][0]


def update_trigger(gateway, **body):
    request = UpdateTriggerRequest(function_urn=URN + ":!prod", trigger_type_code="APIG", trigger_id=trigger_id(gateway),
                                   body=UpdateTriggerRequestBody(**body))
    return client(gateway).update_trigger(request)


def test_the_pipeline_bootstraps_its_function_once(gateway):
    for overrides in ({"code_type": "zip"}, {"runtime": "Python3.9"}, {"timeout": 1}):
        assert refused(lambda: create(gateway, **overrides)) == (400, "FSS.0400"), overrides
    created = create(gateway)
    assert created.func_urn == LATEST
    assert created.digest == hashlib.sha256(gateway.url("build-a").encode()).hexdigest()
    assert refused(lambda: create(gateway)) == (409, "FSS.1061")
    # A second run finds the function instead of creating it.
    found = client(gateway).list_functions(ListFunctionsRequest(package_name="retail", func_name="shop"))
    assert (found.count, [f.func_name for f in found.functions]) == (1, ["shop"])
    everything = client(gateway).list_functions(ListFunctionsRequest(maxitems=1))
    assert (everything.count, everything.next_marker, len(everything.functions)) == (2, 1, 1)


def test_its_configuration_is_read_and_changed(gateway):
    body = UpdateFunctionConfigRequestBody(func_name="shop", runtime="http", timeout=5, handler="bootstrap",
                                           memory_size=128, description="the shop")
    client(gateway).update_function_config(UpdateFunctionConfigRequest(function_urn=URN, body=body))
    shown = client(gateway).show_function_config(ShowFunctionConfigRequest(function_urn=URN))
    assert (shown.timeout, shown.description, shown.code_url) == (5, "the shop", gateway.url("build-a"))
    wrong = UpdateFunctionConfigRequestBody(func_name="shop", runtime="http", timeout=1000, handler="bootstrap", memory_size=128)
    assert refused(lambda: client(gateway).update_function_config(UpdateFunctionConfigRequest(function_urn=URN, body=wrong))) == (400, "FSS.0400")


def test_a_version_is_published_only_from_the_code_that_was_tested(gateway):
    tested = digest_of(gateway)
    # graygate forwards to a running HTTP service: a code package is refused, latest stays.
    for code_type, code_url in (("obs", "https://bucket.obs.example.com/shop.zip"), ("url", "https://bucket.example.com/shop.zip"),
                                ("zip", None), ("docker", gateway.url("build-b"))):
        body = UpdateFunctionCodeRequestBody(code_type=code_type, code_url=code_url)
        call = lambda: client(gateway).update_function_code(UpdateFunctionCodeRequest(function_urn=LATEST, body=body))  # noqa: E731
        assert refused(call) == (400, "FSS.0400"), code_type
    assert digest_of(gateway) == tested
    assert publish(gateway, "v1", tested).version == "v1"
    code = UpdateFunctionCodeRequestBody(code_type="url", code_url=gateway.url("build-b"))
    client(gateway).update_function_code(UpdateFunctionCodeRequest(function_urn=LATEST, body=code))
    # latest moved on since v1's digest was read: publishing under it is refused.
    assert refused(lambda: publish(gateway, "v2", tested)) == (400, "FSS.1017")
    assert publish(gateway, "v2", digest_of(gateway)).version == "v2"
    listed = client(gateway).list_function_versions(ListFunctionVersionsRequest(function_urn=LATEST))
    assert [v.version for v in listed.versions] == ["latest", "v1", "v2"]


def test_ten_percent_of_the_alias_goes_to_the_new_version(gateway):
    body = CreateVersionAliasRequestBody(name="prod", version="v1", additional_version_weights={"v2": 10})
    client(gateway).create_version_alias(CreateVersionAliasRequest(function_urn=LATEST, body=body))
    event = TriggerEventDataRequestBody(env_name="RELEASE", req_method="ANY", protocol="HTTPS", type=1, auth="NONE")
    trigger = client(gateway).create_function_trigger(CreateFunctionTriggerRequest(
        function_urn=URN + ":!prod", body=CreateFunctionTriggerRequestBody(trigger_type_code="APIG", trigger_status="ACTIVE", event_data=event)))
    assert trigger.event_data.path == "/shop-prod"
    assert gateway.split("/shop-prod") == {"build-a": 90, "build-b": 10}
    # invoke_url is where clients reach the trigger: the writer's own data plane.
    with urllib.request.urlopen(trigger.event_data.invoke_url, timeout=5) as answer:
        assert answer.status == 200
        assert answer.read().decode() in ("build-a", "build-b")


def test_the_new_version_is_smoke_tested_through_invoke_function(gateway):
    invoked = client(gateway).invoke_function(InvokeFunctionRequest(function_urn=URN + ":v2", body={"smoke": True}))
    assert (invoked.status, invoked.result) == (200, "build-b")
    assert invoked.request_id
    versions = set()
    for _ in range(10):
        versions.add(client(gateway).invoke_function(InvokeFunctionRequest(function_urn=URN + ":!prod", body={})).result)
    assert versions == {"build-a", "build-b"}, "the alias splits invocations as it splits requests"
    assert refused(lambda: client(gateway).invoke_function(InvokeFunctionRequest(function_urn=URN + ":v9", body={}))) == (404, "FSS.1052")


def test_the_trigger_is_disabled_enabled_and_kept_off_a_taken_path(gateway):
    assert update_trigger(gateway, trigger_status="DISABLED").trigger_status == "DISABLED"
    assert gateway.get("/shop-prod")[0] == 404
    assert update_trigger(gateway, trigger_status="ACTIVE").trigger_status == "ACTIVE"
    assert gateway.get("/shop-prod")[0] == 200
    event = TriggerEventDataRequestBody(env_name="RELEASE", req_method="ANY", protocol="HTTPS", type=1, auth="NONE")
    client(gateway).create_function_trigger(CreateFunctionTriggerRequest(
        function_urn=URN + ":v2", body=CreateFunctionTriggerRequestBody(trigger_type_code="APIG", trigger_status="ACTIVE", event_data=event)))
    # The SDK types event_data as a list; graygate reads the APIG fields from it.
    assert refused(lambda: update_trigger(gateway, event_data=[{"path": "/shop-v2"}])) == (409, "FSS.1147")
    assert refused(lambda: update_trigger(gateway, trigger_status="PAUSED")) == (400, "FSS.1107")
    assert gateway.split("/shop-prod") == {"build-a": 90, "build-b": 10}


def test_the_weight_is_raised_and_the_old_version_deleted(gateway):
    set_alias(gateway, "v1", {"v2": 50})
    assert gateway.split("/shop-prod") == {"build-a": 50, "build-b": 50}
    v1 = DeleteFunctionRequest(function_urn=URN + ":v1")
    assert refused(lambda: client(gateway).delete_function(v1)) == (403, "FSS.1094")
    set_alias(gateway, "v2", {})
    assert gateway.split("/shop-prod", 20) == {"build-b": 20}
    assert client(gateway).delete_function(v1).status_code == 204
    listed = client(gateway).list_function_versions(ListFunctionVersionsRequest(function_urn=LATEST))
    assert [v.version for v in listed.versions] == ["latest", "v2"]
    assert refused(lambda: client(gateway).delete_function(DeleteFunctionRequest(function_urn=LATEST))) == (400, "FSS.1015")


def test_the_function_is_deleted_only_once_nothing_routes_to_it(gateway):
    whole = DeleteFunctionRequest(function_urn=URN)
    assert refused(lambda: client(gateway).delete_function(whole)) == (403, "FSS.1095")
    client(gateway).batch_delete_function_triggers(BatchDeleteFunctionTriggersRequest(function_urn=URN))
    assert gateway.get("/shop-prod")[0] == 404
    assert gateway.get("/shop-v2")[0] == 404
    assert refused(lambda: client(gateway).delete_function(whole)) == (403, "FSS.1095"), "the alias is left"
    client(gateway).delete_version_alias(DeleteVersionAliasRequest(function_urn=LATEST, alias_name="prod"))
    assert client(gateway).delete_function(whole).status_code == 204
    assert refused(lambda: client(gateway).show_function_config(ShowFunctionConfigRequest(function_urn=URN))) == (404, "FSS.1051")
    found = client(gateway).list_functions(ListFunctionsRequest(package_name="retail"))
    assert found.count == 0
