"""`make load`, scaled down: 2,000 signed webhooks of every kind through the local stack's HTTP, Redis
killed and restarted in the middle, the monitor and the send function in dry-run, then the
reconciliation: every accepted event in Redis exactly once, every spilled event replayed, no
message after a STOP or a DND, none over the cap or outside sending hours."""

from __future__ import annotations

import io

import pytest

from local.load import LoadRun, Options, title
from local.load_report import render

pytestmark = [pytest.mark.e2e, pytest.mark.load]  # its own stack (its own redis-server, killed once): one xdist worker


def test_a_scaled_down_load_run_reconciles_exactly_through_a_redis_outage() -> None:
    options = Options(webhooks=2000, leads=60, locations=3, concurrency=8, outage=12, interval=3, seed=13)
    run = LoadRun(options, out=io.StringIO())

    result = run.run()

    table = render(result, title(options, run.plan))
    assert result.ok, table
    figures = result.figures
    assert figures["requests"] >= 2000
    assert figures["spilled"] > 0, table  # the outage happened while webhooks came in
    assert figures["replayed"] == figures["spilled"]
    assert figures["recorded"] == figures["events"], table  # none lost, none doubled
    assert figures["messages"] > 0, table  # follow-ups went out, so the guardrail checks had something to check
    stopped = [lead for lead in run.plan.leads if lead.stopped_at is not None]
    assert any(lead.stop_in_outage for lead in stopped)  # STOPs spilled while Redis was down
