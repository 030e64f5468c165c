"""The marketplace app's installations table: on-demand, point-in-time recovery, a customer-managed KMS
key with rotation, kept when the stack goes; its name given to the functions that use tokens."""

from __future__ import annotations

from typing import Any

from tests.template.sam import LOGICAL_ID


def test_installations_live_in_an_encrypted_on_demand_table_with_point_in_time_recovery(
    resources: dict[str, Any],
) -> None:
    table = resources["InstallationsTable"]
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [{"AttributeName": "location_id", "KeyType": "HASH"}]
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["SSESpecification"] == {
        "SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "InstallationsKey"},
    }  # fmt: skip
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    key = resources["InstallationsKey"]
    assert key["Type"] == "AWS::KMS::Key"
    assert key["Properties"]["EnableKeyRotation"] is True


def test_the_webhook_and_send_functions_get_the_table_and_the_oauth_client(resources: dict[str, Any]) -> None:
    for function in ("webhook", "send"):
        env = resources[LOGICAL_ID[function]]["Properties"]["Environment"]["Variables"]
        assert env["INSTALLATIONS_TABLE"] == {"Ref": "InstallationsTable"}, function
        assert env["GHL_CLIENT_ID"] == {"Fn::If": ["WithMarketplace", {"Ref": "GhlClientId"}, {"Ref": "AWS::NoValue"}]}
        assert env["GHL_CLIENT_SECRET_SECRET_ARN"]["Fn::If"][1] == {"Ref": "GhlClientSecret"}
    for function in ("score", "monitor"):
        env = resources[LOGICAL_ID[function]]["Properties"].get("Environment", {}).get("Variables", {})
        assert "INSTALLATIONS_TABLE" not in env, function


def test_a_refused_refresh_token_raises_an_alarm(resources: dict[str, Any]) -> None:
    alarm = resources["InstallationNeedsReinstallAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Threshold"]) == (
        "leadflow",
        "InstallationsNeedingReinstall",
        1,
    )
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
