"""Cold start in the template: the X-Ray SDK only when asked for (Lambda's active tracing either way),
and SnapStart for the send function behind a parameter, off by default, on the alias every event
source invokes, with a new version for every change of its code or of the layer."""

from __future__ import annotations

from typing import Any

from tests.template.sam import LOGICAL_ID, consumer, load_template, of_type, transform


def test_the_tracer_sdk_is_off_unless_asked_for_and_lambda_traces_either_way(
    sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    parameter = sam_template["Parameters"]["TracerSdk"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("false", ["false", "true"])
    assert sam_template["Conditions"]["WithTracerSdk"] == {"Fn::Equals": [{"Ref": "TracerSdk"}, "true"]}
    for function in LOGICAL_ID.values():
        properties = resources[function]["Properties"]
        assert properties["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == {
            "Fn::If": ["WithTracerSdk", "false", "true"]
        }, function
        assert properties["TracingConfig"] == {"Mode": "Active"}, function


def test_snapstart_is_a_parameter_of_the_send_function_off_by_default(
    sam_template: dict[str, Any], resources: dict[str, Any]
) -> None:
    parameter = sam_template["Parameters"]["SendSnapStart"]
    assert (parameter["Default"], sorted(parameter["AllowedValues"])) == ("None", ["None", "PublishedVersions"])

    snapstart = {
        name: f["Properties"].get("SnapStart") for name, f in of_type(resources, "AWS::Lambda::Function").items()
    }
    assert snapstart == dict.fromkeys(snapstart) | {"SendFunction": {"ApplyOn": {"Ref": "SendSnapStart"}}}


def test_the_send_function_is_invoked_through_its_alias_so_snapstart_applies_to_every_invocation(
    resources: dict[str, Any],
) -> None:
    # SnapStart covers published versions only ($LATEST never): the alias is what is invoked
    [(alias_id, alias)] = of_type(resources, "AWS::Lambda::Alias").items()
    [(version_id, version)] = of_type(resources, "AWS::Lambda::Version").items()
    assert alias["Properties"]["FunctionName"] == version["Properties"]["FunctionName"] == {"Ref": "SendFunction"}
    assert alias["Properties"]["FunctionVersion"] == {"Fn::GetAtt": [version_id, "Version"]}
    assert version["DeletionPolicy"] == "Delete"  # a replaced version's snapshot is billed until it is gone

    [mapping] = [
        m
        for m in of_type(resources, "AWS::Lambda::EventSourceMapping").values()
        if consumer(resources, m) == "SendFunction"
    ]
    assert mapping["Properties"]["FunctionName"] == {"Ref": alias_id}
    invoked_by_api = {
        p["Properties"]["FunctionName"]["Ref"]
        for p in of_type(resources, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "apigateway.amazonaws.com"
        and p["Properties"]["FunctionName"]["Ref"] in {"SendFunction", alias_id}
    }
    assert invoked_by_api == {alias_id}


def test_turning_snapstart_on_or_off_publishes_a_new_version(resources: dict[str, Any]) -> None:
    # SAM's version name hashes the properties as written (the parameter's Ref, whatever its value), so
    # the value reaches the version through its Description, whose change CloudFormation makes a replacement:
    # a new version, published from the function as now configured, and a snapshot of it
    [version] = of_type(resources, "AWS::Lambda::Version").values()
    assert "${SendSnapStart}" in version["Properties"]["Description"]["Fn::Sub"]


def test_the_send_function_has_nothing_snapstart_cannot_run_with(resources: dict[str, Any]) -> None:
    # SnapStart: Python 3.12 or later; no provisioned concurrency, no EFS, ephemeral storage of 512 MB at most
    send = resources["SendFunction"]["Properties"]
    assert send["Runtime"] == "python3.12"
    assert "FileSystemConfigs" not in send
    assert send.get("EphemeralStorage", {"Size": 512})["Size"] <= 512
    assert all(
        "ProvisionedConcurrencyConfig" not in a["Properties"] for a in of_type(resources, "AWS::Lambda::Alias").values()
    )


def test_a_change_of_the_layer_alone_publishes_a_new_version_of_the_send_function() -> None:
    # All of leadflow is in the layer: a version that kept the old layer would keep the old code
    def version_ids(layer_zip: str) -> set[str]:
        template = transform(load_template(), artifacts={"CommonLayer": layer_zip})
        return set(of_type(template["Resources"], "AWS::Lambda::Version"))

    before, after = (
        version_ids("s3://leadflow-artifacts/layer-1.zip"),
        version_ids("s3://leadflow-artifacts/layer-2.zip"),
    )
    assert len(before) == len(after) == 1
    assert before != after
