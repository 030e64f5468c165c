"""samconfig.toml: a default and a prod environment that `sam build` and `sam deploy` can use as they are."""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest

from tests.helpers import ROOT

CONFIG = tomllib.loads((ROOT / "samconfig.toml").read_text())


def overrides(env: str) -> dict[str, str]:
    pairs = CONFIG[env]["deploy"]["parameters"]["parameter_overrides"]
    return dict(pair.split("=", 1) for pair in pairs)


def test_the_config_is_version_0_1_with_a_default_and_a_prod_environment() -> None:
    assert CONFIG["version"] == 0.1
    assert {"default", "prod"} <= set(CONFIG)


@pytest.mark.parametrize("env", ["default", "prod"])
def test_each_environment_builds_cached_and_in_parallel(env: str) -> None:
    assert CONFIG[env]["build"]["parameters"] == {"cached": True, "parallel": True}


@pytest.mark.parametrize("env", ["default", "prod"])
def test_each_environment_deploys_its_own_stack_with_a_managed_bucket_and_iam_capability(env: str) -> None:
    deploy = CONFIG[env]["deploy"]["parameters"]

    assert deploy["stack_name"] == f"leadflow-{'dev' if env == 'default' else env}"
    assert deploy["resolve_s3"] is True
    assert "CAPABILITY_IAM" in deploy["capabilities"].split()


@pytest.mark.parametrize("env", ["default", "prod"])
def test_each_environment_gives_every_parameter_without_a_default_and_only_real_ones(
    env: str, sam_template: dict[str, Any]
) -> None:
    parameters = sam_template["Parameters"]
    given = overrides(env)

    assert set(given) <= set(parameters), "overrides a parameter the template does not have"
    assert {name for name, p in parameters.items() if "Default" not in p} <= set(given)
    for name, value in given.items():
        if "AllowedValues" in parameters[name]:
            assert value in [str(v) for v in parameters[name]["AllowedValues"]], name
        if "AllowedPattern" in parameters[name]:
            assert re.fullmatch(parameters[name]["AllowedPattern"], value), name


def test_the_two_environments_use_different_stacks_and_caches() -> None:
    stacks = {env: CONFIG[env]["deploy"]["parameters"]["stack_name"] for env in ("default", "prod")}
    assert stacks["default"] != stacks["prod"]
    assert overrides("default")["CacheName"] != overrides("prod")["CacheName"]
