"""The official huaweicloudsdkfunctiongraph SDK, unmodified, drives a gray upgrade V1 → V2 → V3.

Tests run in file order and share one gateway: each step builds on the previous one,
like the how-to in FunctionGraph's documentation.
"""
import json

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkfunctiongraph.v2 import (
    CreateFunctionTriggerRequest,
    CreateFunctionTriggerRequestBody,
    CreateFunctionVersionRequest,
    CreateFunctionVersionRequestBody,
    CreateVersionAliasRequest,
    CreateVersionAliasRequestBody,
    DeleteFunctionTriggerRequest,
    DeleteVersionAliasRequest,
    FunctionGraphClient,
    ListFunctionTriggersRequest,
    ListFunctionVersionsRequest,
    ListVersionAliasesRequest,
    ShowFunctionTriggerRequest,
    ShowVersionAliasRequest,
    TriggerEventDataRequestBody,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
    UpdateVersionAliasRequest,
    UpdateVersionAliasRequestBody,
    VersionStrategy,
    VersionStrategyRules,
)

from conftest import HUAWEI_AK, HUAWEI_SK, PROJECT, REGION, audit

URN = f"urn:fss:{REGION}:{PROJECT}:function:default:hello"
LATEST = URN + ":latest"


def client(gateway, sk=HUAWEI_SK, project=PROJECT):
    return (
        FunctionGraphClient.new_builder()
        .with_credentials(BasicCredentials(HUAWEI_AK, sk, project))
        .with_endpoints([f"http://127.0.0.1:{gateway.admin_port}"])
        .build()
    )


def point_latest_at(gateway, build):
    body = UpdateFunctionCodeRequestBody(code_type="url", code_url=gateway.url(build))
    client(gateway).update_function_code(UpdateFunctionCodeRequest(function_urn=LATEST, body=body))


def publish(gateway, version, description=None):
    body = CreateFunctionVersionRequestBody(version=version, description=description)
    return client(gateway).create_function_version(CreateFunctionVersionRequest(function_urn=LATEST, body=body))


def test_publish_v1_and_v2_from_latest(gateway):
    v1 = publish(gateway, "V1", "first")
    assert v1.status_code == 200
    assert v1.version == "V1"
    assert v1.func_urn == URN + ":V1"
    point_latest_at(gateway, "build-b")
    assert publish(gateway, "V2").version == "V2"
    # Nothing changed since V2: FunctionGraph refuses to publish again.
    with pytest.raises(ClientRequestException) as refused:
        publish(gateway, "V2b")
    assert (refused.value.status_code, refused.value.error_code) == (400, "FSS.1016")
    listed = client(gateway).list_function_versions(ListFunctionVersionsRequest(function_urn=LATEST))
    assert [v.version for v in listed.versions] == ["latest", "V1", "V2"]
    assert listed.count == 3


def test_alias_at_100_percent_v1_with_an_apig_trigger(gateway):
    created = client(gateway).create_version_alias(
        CreateVersionAliasRequest(function_urn=LATEST, body=CreateVersionAliasRequestBody(name="alias", version="V1"))
    )
    assert created.alias_urn == URN + ":!alias"
    event = TriggerEventDataRequestBody(env_name="RELEASE", req_method="ANY", protocol="HTTPS", type=1, auth="IAM")
    body = CreateFunctionTriggerRequestBody(trigger_type_code="APIG", trigger_status="ACTIVE", event_data=event)
    trigger = client(gateway).create_function_trigger(CreateFunctionTriggerRequest(function_urn=URN + ":!alias", body=body))
    assert trigger.trigger_type_code == "APIG"
    assert trigger.event_data.path == "/hello-alias"
    assert trigger.event_data.name == "API_helloalias"
    assert gateway.split("/hello-alias", 20) == {"build-a": 20}


def test_shift_to_v2_by_weight(gateway):
    body = UpdateVersionAliasRequestBody(version="V1", additional_version_weights={"V2": 20})
    updated = client(gateway).update_version_alias(UpdateVersionAliasRequest(function_urn=LATEST, alias_name="alias", body=body))
    assert updated.additional_version_weights == {"V2": 20}
    # The change is live when the call returns: every 100 requests split exactly.
    assert gateway.split("/hello-alias") == {"build-a": 80, "build-b": 20}


def test_publish_v3_and_move_the_alias_to_v2_plus_v3(gateway):
    point_latest_at(gateway, "build-c")
    publish(gateway, "V3")
    body = UpdateVersionAliasRequestBody(version="V2", additional_version_weights={"V3": 10})
    client(gateway).update_version_alias(UpdateVersionAliasRequest(function_urn=LATEST, alias_name="alias", body=body))
    assert gateway.split("/hello-alias") == {"build-b": 90, "build-c": 10}
    shown = client(gateway).show_version_alias(ShowVersionAliasRequest(function_urn=LATEST, alias_name="alias"))
    assert (shown.version, shown.additional_version_weights) == ("V2", {"V3": 10})
    listed = client(gateway).list_version_aliases(ListVersionAliasesRequest(function_urn=LATEST))
    assert [a.name for a in listed.body] == ["alias"]


def test_a_header_rule_sends_testers_to_v3(gateway):
    rules = [VersionStrategyRules(rule_type="Header", param="x-user-group", op="in", value="qa,beta")]
    body = UpdateVersionAliasRequestBody(version="V2", additional_version_strategy={"V3": VersionStrategy(combine_type="and", rules=rules)})
    client(gateway).update_version_alias(UpdateVersionAliasRequest(function_urn=LATEST, alias_name="alias", body=body))
    assert gateway.get("/hello-alias", {"x-user-group": "qa"}) == (200, "build-c")
    assert gateway.split("/hello-alias", 20) == {"build-b": 20}


def test_triggers_list_show_and_guard_the_alias(gateway):
    listed = client(gateway).list_function_triggers(ListFunctionTriggersRequest(function_urn=URN))
    assert [t.event_data.path for t in listed.body] == ["/hello-alias"]
    trigger_id = listed.body[0].trigger_id
    shown = client(gateway).show_function_trigger(
        ShowFunctionTriggerRequest(function_urn=URN, trigger_type_code="APIG", trigger_id=trigger_id)
    )
    assert shown.trigger_id == trigger_id
    with pytest.raises(ClientRequestException) as guarded:
        client(gateway).delete_version_alias(DeleteVersionAliasRequest(function_urn=LATEST, alias_name="alias"))
    assert (guarded.value.status_code, guarded.value.error_code) == (403, "FSS.1154")

    client(gateway).delete_function_trigger(
        DeleteFunctionTriggerRequest(function_urn=URN, trigger_type_code="APIG", trigger_id=trigger_id)
    )
    assert gateway.get("/hello-alias")[0] == 404
    deleted = client(gateway).delete_version_alias(DeleteVersionAliasRequest(function_urn=LATEST, alias_name="alias"))
    assert deleted.status_code == 204


def test_errors_reach_the_sdk_with_their_codes(gateway):
    with pytest.raises(ClientRequestException) as missing:
        client(gateway).show_version_alias(ShowVersionAliasRequest(function_urn=LATEST, alias_name="nope"))
    assert (missing.value.status_code, missing.value.error_code) == (404, "FSS.1053")
    assert missing.value.request_id
    with pytest.raises(ClientRequestException) as unknown:
        client(gateway).list_version_aliases(ListVersionAliasesRequest(function_urn=URN.replace("hello", "ghost")))
    assert (unknown.value.status_code, unknown.value.error_code) == (404, "FSS.1051")
    body = UpdateVersionAliasRequestBody(version="V2", additional_version_weights={"V2": 10})
    client(gateway).create_version_alias(
        CreateVersionAliasRequest(function_urn=LATEST, body=CreateVersionAliasRequestBody(name="again", version="V1"))
    )
    with pytest.raises(ClientRequestException) as same:
        client(gateway).update_version_alias(UpdateVersionAliasRequest(function_urn=LATEST, alias_name="again", body=body))
    assert same.value.error_code == "FSS.1093"


def test_a_wrong_secret_key_is_refused(gateway):
    with pytest.raises(ClientRequestException) as refused:
        client(gateway, sk="not-the-secret").list_version_aliases(ListVersionAliasesRequest(function_urn=LATEST))
    assert refused.value.status_code == 401


def test_the_audit_trail_names_the_sdk_access_key(gateway):
    gateway.converge()
    records = audit(gateway.reader_admin_port, function="hello", limit=1000)
    applied = [r for r in records if r["operation"] == "functiongraph:UpdateVersionAlias" and r["result"] == "applied"]
    assert applied and all(r["actor"] == f"ak:{HUAWEI_AK}" for r in applied), records
    assert all(r["request_id"] for r in applied)
    refused = [r for r in records if r["result"] == "refused" and "FSS.1093" in r.get("error", "")]
    assert len(refused) == 1, records
    assert refused[0]["actor"] == f"ak:{HUAWEI_AK}" and refused[0]["alias"] == "again"
    assert HUAWEI_SK not in json.dumps(records)
