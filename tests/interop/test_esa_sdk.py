"""The official alibabacloud-esa20240910 SDK, unmodified, deploys routine code versions."""
from datetime import datetime

import pytest
from alibabacloud_esa20240910 import models
from alibabacloud_esa20240910.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils_models import Config, OpenApiRequest, Params
from darabonba.runtime import RuntimeOptions

from conftest import ALIBABA_AK, ALIBABA_SK, audit
from test_functiongraph_sdk import point_latest_at, publish


def client(gateway, secret=ALIBABA_SK):
    config = Config(access_key_id=ALIBABA_AK, access_key_secret=secret, endpoint=f"127.0.0.1:{gateway.admin_port}", protocol="http")
    return Client(config)


def deploy(gateway, env="production", strategy="percentage", versions=(("v2", 30), ("v3", 70)), name="hello"):
    code_versions = [
        models.CreateRoutineCodeDeploymentRequestCodeVersions(code_version=v, percentage=p) for v, p in versions
    ]
    request = models.CreateRoutineCodeDeploymentRequest(name=name, env=env, strategy=strategy, code_versions=code_versions)
    return client(gateway).create_routine_code_deployment(request)


@pytest.fixture(scope="module", autouse=True)
def three_code_versions(gateway):
    """Code versions v1, v2, v3, each published from a different build (by the Huawei SDK)."""
    publish(gateway, "v1")
    for version, build in (("v2", "build-b"), ("v3", "build-c")):
        point_latest_at(gateway, build)
        publish(gateway, version)


def test_a_deployment_splits_production_traffic(gateway):
    response = deploy(gateway)
    assert response.status_code == 200
    assert response.body.strategy == "percentage"
    assert response.body.deployment_id
    assert response.body.request_id
    # In the request's order: the first is the environment's own version, the rest its gray.
    assert [(c.code_version, c.percentage) for c in response.body.code_versions] == [("v2", 30), ("v3", 70)]
    # The default trigger /{name}-{env} serves the environment.
    assert gateway.split("/hello-production") == {"build-c": 70, "build-b": 30}
    # The audit trail names the access key and the request, on every replica.
    records = audit(gateway.reader_admin_port, alias="production")
    mine = [r for r in records if r["request_id"] == response.body.request_id]
    assert len(mine) == 1, records
    assert (mine[0]["actor"], mine[0]["operation"], mine[0]["result"]) == (
        f"ak:{ALIBABA_AK}", "esa:CreateRoutineCodeDeployment", "applied")


def test_a_single_version_takes_all_of_staging(gateway):
    deploy(gateway, env="staging", versions=(("v1", 100),))
    assert gateway.split("/hello-staging", 20) == {"build-a": 20}


def test_get_routine_reports_each_environment(gateway):
    routine = client(gateway).get_routine(models.GetRoutineRequest(name="hello")).body
    envs = {e.env: e.code_deploy for e in routine.envs}
    assert set(envs) == {"production", "staging"}
    assert sorted((c.code_version, c.percentage) for c in envs["production"].code_versions) == [("v2", 30), ("v3", 70)]
    assert envs["production"].strategy == "percentage"


def test_list_routine_code_versions(gateway):
    listed = client(gateway).list_routine_code_versions(models.ListRoutineCodeVersionsRequest(name="hello", page_number=1, page_size=2)).body
    assert listed.total_count == 3
    assert [c.code_version for c in listed.code_versions] == ["v1", "v2"]


@pytest.mark.parametrize(
    "kwargs, code",
    [
        ({"env": "test"}, "InvalidParameter"),
        ({"strategy": "weighted"}, "InvalidParameter"),
        ({"versions": (("v1", 50), ("v2", 40))}, "InvalidParameter"),
        ({"versions": (("v1", 50), ("v2", 30), ("v3", 20))}, "InvalidParameter"),
        ({"versions": (("v1", 0), ("v2", 100))}, "InvalidParameter"),
        ({"versions": (("v9", 100),)}, "ParameterNotExist"),
        ({"name": "ghost"}, "RoutineNotExist"),
    ],
)
def test_each_validation_error(gateway, kwargs, code):
    before = gateway.split("/hello-production")
    with pytest.raises(ClientException) as refused:
        deploy(gateway, **kwargs)
    assert (refused.value.status_code, refused.value.code) == (400, code)
    assert refused.value.request_id
    assert gateway.split("/hello-production") == before


def test_a_wrong_secret_is_refused(gateway):
    with pytest.raises(ClientException) as refused:
        client(gateway, secret="wrong").get_routine(models.GetRoutineRequest(name="hello"))
    # Alibaba's own answer to a bad signature, which the SDK's callers already handle.
    assert (refused.value.status_code, refused.value.code) == (400, "SignatureDoesNotMatch")


def test_an_unknown_access_key_is_alibabas_invalid_access_key_id_not_found(gateway):
    config = Config(access_key_id="LTAI-nobody", access_key_secret=ALIBABA_SK, endpoint=f"127.0.0.1:{gateway.admin_port}", protocol="http")
    with pytest.raises(ClientException) as refused:
        Client(config).get_routine(models.GetRoutineRequest(name="hello"))
    assert (refused.value.status_code, refused.value.code) == (404, "InvalidAccessKeyId.NotFound")


def test_a_stale_timestamp_is_alibabas_invalid_timestamp_expired(gateway):
    """The SDK signs the x-acs-date it is given; one from 2020 is outside the 15-minute window."""
    params = Params(action="GetRoutine", version="2024-09-10", protocol="HTTP", pathname="/", method="POST",
                    auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    stale = OpenApiRequest(headers={"x-acs-date": "2020-01-01T00:00:00Z"}, body={"Name": "hello"})
    with pytest.raises(ClientException) as refused:
        client(gateway).call_api(params, stale, RuntimeOptions())
    assert (refused.value.status_code, refused.value.code) == (400, "InvalidTimeStamp.Expired")


def test_times_are_rfc_3339(gateway):
    listed = client(gateway).list_routine_code_versions(models.ListRoutineCodeVersionsRequest(name="hello")).body
    envs = client(gateway).get_routine(models.GetRoutineRequest(name="hello")).body.envs
    deployed = [c.create_time for e in envs for c in e.code_deploy.code_versions]
    assert listed.code_versions and deployed
    for stamp in [c.create_time for c in listed.code_versions] + deployed:
        parsed = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert parsed.tzinfo is not None and parsed.year >= 2024, stamp


def test_an_action_graygate_does_not_have_is_alibabas_invalid_action_not_found(gateway):
    """The SDK's generic call, signed as its own operations are, for an action that does not exist."""
    params = Params(action="DeleteEverything", version="2024-09-10", protocol="HTTP", pathname="/", method="POST",
                    auth_type="AK", style="RPC", req_body_type="formData", body_type="json")
    with pytest.raises(ClientException) as refused:
        client(gateway).call_api(params, OpenApiRequest(body={"Name": "hello"}), RuntimeOptions())
    assert (refused.value.status_code, refused.value.code) == (404, "InvalidAction.NotFound")
    assert refused.value.request_id


def test_deployment_ids_count_up_and_never_repeat(gateway):
    ids = [int(deploy(gateway, env="staging", versions=(("v1", 100),)).body.deployment_id) for _ in range(10)]
    assert ids == sorted(set(ids)), ids
