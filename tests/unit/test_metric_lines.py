"""observability.count writes the EMF line Powertools' single_metric writes, without its per-call cost."""

from __future__ import annotations

import json

import pytest
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from leadflow.observability import NAMESPACE, SERVICE, count

CASES = [
    ("EventsReceived", 3, MetricUnit.Count, {"event_type": "ContactDndUpdate", "outcome": "accepted"}),
    ("SpeedToLeadSeconds", 42.5, MetricUnit.Seconds, {"source": "fast_path"}),
    ("ClaudeLatency", 812, MetricUnit.Milliseconds, {}),
]


def powertools_line(name: str, value: float, unit: MetricUnit, dimensions: dict[str, str]) -> None:
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dim in dimensions.items():
            metric.add_dimension(name=key, value=dim)


@pytest.mark.parametrize(("name", "value", "unit", "dimensions"), CASES)
def test_count_prints_the_line_single_metric_prints(
    name: str, value: float, unit: MetricUnit, dimensions: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    powertools_line(name, value, unit, dimensions)
    count(name, value, unit, **dimensions)
    theirs, ours = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert abs(theirs["_aws"].pop("Timestamp") - ours["_aws"].pop("Timestamp")) < 1000
    assert ours == theirs
    assert ours[name] == [float(value)]
