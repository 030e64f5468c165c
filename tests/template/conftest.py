"""Fixtures for the template tests: the SAM template as written, and as CloudFormation after the SAM
transform, run offline (local code paths swapped for S3 URIs, no managed-policy lookups, no AWS)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.template.sam import load_template, transform


@pytest.fixture(scope="session")
def sam_template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="session")
def _transformed(sam_template: dict[str, Any]) -> dict[str, Any]:
    return transform(sam_template)


@pytest.fixture
def cfn(_transformed: dict[str, Any]) -> dict[str, Any]:
    """The transformed template; a copy, so that no test changes what another sees."""
    return copy.deepcopy(_transformed)


@pytest.fixture
def resources(cfn: dict[str, Any]) -> dict[str, Any]:
    resources: dict[str, Any] = cfn["Resources"]
    return resources
