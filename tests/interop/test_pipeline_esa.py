"""ESA's own release flow on the official alibabacloud-esa20240910 SDK, unmodified: a
routine is created, its staging code committed as code versions, staging grayed 90/10,
the new version published to production, inspected, and the old one deleted once nothing
uses it. Refusals are asserted with Alibaba's codes and leave the routing as it was.

graygate runs no code of its own: a routine's staging code is the URL of an HTTP service,
set through FunctionGraph's update_function_code (the Huawei SDK), as a build step would.
Tests run in file order and share one gateway per mode.
"""
import hashlib
import json

import pytest
from alibabacloud_esa20240910 import models
from alibabacloud_tea_openapi.exceptions import ClientException
from huaweicloudsdkfunctiongraph.v2 import (
    BatchDeleteFunctionTriggersRequest,
    DeleteVersionAliasRequest,
    UpdateFunctionCodeRequest,
    UpdateFunctionCodeRequestBody,
    UpdateVersionAliasRequest,
    UpdateVersionAliasRequestBody,
    VersionStrategy,
    VersionStrategyRules,
)

import test_functiongraph_sdk as fg
from conftest import PROJECT, REGION
from test_esa_sdk import client, deploy

URN = f"urn:fss:{REGION}:{PROJECT}:function:default:edge"
CODE = {}  # the code versions the flow commits, by the build they run


def refused(call):
    """(status, Alibaba error code) of a call that must fail."""
    with pytest.raises(ClientException) as error:
        call()
    assert error.value.request_id
    return error.value.status_code, error.value.code


def staging_code_is(gateway, build):
    body = UpdateFunctionCodeRequestBody(code_type="url", code_url=gateway.url(build))
    fg.client(gateway).update_function_code(UpdateFunctionCodeRequest(function_urn=URN + ":latest", body=body))


def commit(gateway, description):
    request = models.CommitRoutineStagingCodeRequest(name="edge", code_description=description)
    return client(gateway).commit_routine_staging_code(request).body.code_version


def code_versions(gateway):
    listed = client(gateway).list_routine_code_versions(models.ListRoutineCodeVersionsRequest(name="edge")).body
    return {c.code_version: c.deploy_env for c in listed.code_versions}


def test_a_routine_is_created_once_and_found_by_name(gateway):
    created = client(gateway).create_routine(models.CreateRoutineRequest(name="edge", description="the edge"))
    assert created.body.request_id
    again = models.CreateRoutineRequest(name="edge")
    assert refused(lambda: client(gateway).create_routine(again)) == (400, "RoutineNameAlreadyExist")
    assets = models.CreateRoutineRequest(name="static", has_assets=True)
    assert refused(lambda: client(gateway).create_routine(assets)) == (400, "InvalidParameter")
    found = client(gateway).list_user_routines(models.ListUserRoutinesRequest(search_key_word="edg")).body
    assert (found.total_count, [(r.routine_name, r.description) for r in found.routines]) == (1, [("edge", "the edge")])


def test_nothing_is_committed_before_there_is_staging_code(gateway):
    assert refused(lambda: commit(gateway, "empty")) == (400, "InvalidParameter")
    staging_code_is(gateway, "build-a")
    CODE["build-a"] = commit(gateway, "first")
    assert CODE["build-a"].isdigit()
    # The staging code did not change: there is nothing new to commit.
    assert refused(lambda: commit(gateway, "same")) == (400, "InvalidParameter")
    published = client(gateway).publish_routine_code_version(
        models.PublishRoutineCodeVersionRequest(name="edge", code_version=CODE["build-a"], env="production"))
    assert published.body.code_version == CODE["build-a"]
    assert gateway.split("/edge-production", 20) == {"build-a": 20}


def test_staging_is_grayed_ninety_ten_onto_the_new_code(gateway):
    staging_code_is(gateway, "build-b")
    CODE["build-b"] = commit(gateway, "second")
    assert int(CODE["build-b"]) > int(CODE["build-a"])
    # The first code version named is the environment's own; the rest are its gray.
    answer = deploy(gateway, env="staging", versions=((CODE["build-a"], 90), (CODE["build-b"], 10)), name="edge")
    assert [(c.code_version, c.percentage) for c in answer.body.code_versions] == [(CODE["build-a"], 90), (CODE["build-b"], 10)]
    assert gateway.split("/edge-staging") == {"build-a": 90, "build-b": 10}
    assert gateway.split("/edge-production", 20) == {"build-a": 20}


def test_a_code_version_says_what_it_runs_and_where_it_is_deployed(gateway):
    info = client(gateway).get_routine_code_version_info(
        models.GetRoutineCodeVersionInfoRequest(name="edge", code_version=CODE["build-b"])).body
    assert info.code_description == "second"
    extra = json.loads(info.extra_info)
    assert extra == {"CodeUrl": gateway.url("build-b"), "Digest": hashlib.sha256(gateway.url("build-b").encode()).hexdigest()}
    missing = models.GetRoutineCodeVersionInfoRequest(name="edge", code_version="1")
    assert refused(lambda: client(gateway).get_routine_code_version_info(missing)) == (400, "ParameterNotExist")
    assert code_versions(gateway) == {CODE["build-a"]: "staging,production", CODE["build-b"]: "staging"}


def test_the_new_code_is_published_and_the_old_deleted_once_unused(gateway):
    old = models.DeleteRoutineCodeVersionRequest(name="edge", code_version=CODE["build-a"])
    assert refused(lambda: client(gateway).delete_routine_code_version(old)) == (400, "DependedByOthers")
    for env in ("production", "staging"):
        client(gateway).publish_routine_code_version(
            models.PublishRoutineCodeVersionRequest(name="edge", code_version=CODE["build-b"], env=env))
    assert gateway.split("/edge-production", 20) == {"build-b": 20}
    assert gateway.split("/edge-staging", 20) == {"build-b": 20}
    client(gateway).delete_routine_code_version(old)
    assert code_versions(gateway) == {CODE["build-b"]: "staging,production"}


def test_an_environment_with_header_rules_is_shown_truthfully_and_never_stripped(gateway):
    staging_code_is(gateway, "build-c")
    CODE["build-c"] = commit(gateway, "third")
    rules = [VersionStrategyRules(rule_type="Header", param="x-user-group", op="=", value="qa")]
    body = UpdateVersionAliasRequestBody(version=CODE["build-b"], additional_version_strategy={CODE["build-c"]: VersionStrategy(combine_type="and", rules=rules)})
    fg.client(gateway).update_version_alias(UpdateVersionAliasRequest(function_urn=URN + ":latest", alias_name="staging", body=body))
    envs = {e.env: e.code_deploy for e in client(gateway).get_routine(models.GetRoutineRequest(name="edge")).body.envs}
    assert envs["staging"].strategy == "rules+percentage"
    assert sorted((c.code_version, c.percentage) for c in envs["staging"].code_versions) == sorted([(CODE["build-b"], 100), (CODE["build-c"], 0)])
    assert envs["production"].strategy == "percentage"
    # A percentage deployment cannot carry the rule: it is refused rather than dropping it.
    assert refused(lambda: deploy(gateway, env="staging", versions=((CODE["build-c"], 100),), name="edge")) == (400, "InvalidParameter")
    assert gateway.get("/edge-staging", {"x-user-group": "qa"}) == (200, "build-c")
    assert gateway.split("/edge-staging", 20) == {"build-b": 20}


def test_a_routine_is_deleted_only_once_nothing_depends_on_it(gateway):
    edge = models.DeleteRoutineRequest(name="edge")
    assert refused(lambda: client(gateway).delete_routine(edge)) == (400, "DependedByOthers")
    fg.client(gateway).batch_delete_function_triggers(BatchDeleteFunctionTriggersRequest(function_urn=URN))
    for env in ("production", "staging"):
        fg.client(gateway).delete_version_alias(DeleteVersionAliasRequest(function_urn=URN + ":latest", alias_name=env))
    client(gateway).delete_routine(edge)
    assert gateway.get("/edge-production")[0] == 404
    gone = models.GetRoutineRequest(name="edge")
    assert refused(lambda: client(gateway).get_routine(gone))[1] == "RoutineNotExist"
    found = client(gateway).list_user_routines(models.ListUserRoutinesRequest(search_key_word="edge")).body
    assert found.total_count == 0
