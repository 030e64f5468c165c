"""Cold start in the template: the X-Ray SDK only when asked for (Lambda's active tracing either way);
and no function served through published versions, which SnapStart would need (README, "Cold start
and SnapStart")."""

from __future__ import annotations

import copy
from typing import Any

from tests.template.sam import LOGICAL_ID, of_type, transform


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


def test_no_function_runs_from_a_published_version(sam_template: dict[str, Any], resources: dict[str, Any]) -> None:
    assert "AutoPublishAlias" not in sam_template["Globals"]["Function"]
    for function in LOGICAL_ID.values():
        assert {"AutoPublishAlias", "SnapStart"} & set(sam_template["Resources"][function]["Properties"]) == set()
    assert of_type(resources, "AWS::Lambda::Version") == {}


def test_sam_would_publish_no_new_version_for_a_new_parameter_value(sam_template: dict[str, Any]) -> None:
    # Why not: SAM names a published version by a hash of the function's properties as written, so a
    # new SendingHours (or SendMode, or a replaced queue's URL) would leave the alias on the old version,
    # still sending by the old rules. If SAM ever resolves the values first, this fails: look again.
    def versions(sending_hours: str) -> set[str]:
        template = copy.deepcopy(sam_template)
        template["Resources"]["SendFunction"]["Properties"]["AutoPublishAlias"] = "live"
        template["Parameters"]["SendingHours"]["Default"] = sending_hours
        return set(of_type(transform(template)["Resources"], "AWS::Lambda::Version"))

    assert versions("8-21") == versions("9-17") != set()
