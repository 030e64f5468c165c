"""End to end, the monitor fanned out: a local stack whose monitor does one candidate per shard, so
that a scheduled run with three hot leads queues three shards on the template's shard queue, the
stack's poller delivers them to the monitor, and each lead gets one message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from local.keys import ensure
from local.launch import StackFailed, launch
from tests.e2e.conftest import DROPPED, INTERVAL, Stack, wait_for
from tests.e2e.test_local_stack import create_contact, messages, send_activity

pytestmark = pytest.mark.e2e

# Hot (about 66), not urgent: the webhook's fast path leaves them to the monitor.
HOT_SIGNALS = ("pricing_tool_usage",) * 3 + ("neighborhood_research",) * 2


@pytest.fixture(scope="module")
def fanout_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    state_dir: Path = tmp_path_factory.mktemp("local-stack-fanout")
    log = state_dir / "stack.log"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("MONITOR_SHARD_LEADS", "1")  # the template's MonitorShardLeads, as a user overrides it
        try:
            launched = launch(INTERVAL, log, state_dir=state_dir, drop_env=DROPPED)
        except StackFailed as exc:
            pytest.fail(str(exc))
    http = httpx.Client(base_url=launched.base, timeout=30)
    try:
        yield Stack(launched.base, ensure(state_dir), launched.health, http), log
    finally:
        http.close()
        launched.stop()


def test_a_run_over_the_shard_size_is_fanned_out_through_the_shard_queue_and_each_lead_gets_one_message(
    fanout_stack: tuple[Stack, Path],
) -> None:
    stack, log = fanout_stack
    location_id = "e2e-fanout"
    assert "MonitorShardQueue" in stack.health["queues"]

    # Given three hot leads, made while the monitor waits (so that no run sees only some of them)
    assert stack.api("PUT", "/followups/monitoring", location_id, {"enabled": False}).status_code == 200
    leads = ["hot-1", "hot-2", "hot-3"]
    try:
        for contact_id in leads:
            create_contact(stack, location_id, contact_id, source="Facebook Ad")
            for signal in HOT_SIGNALS:
                assert send_activity(stack, location_id, contact_id, signal).json() == {"status": "accepted"}
            assert stack.api("GET", f"/leads/{contact_id}/score", location_id).json()["intent_level"] == "hot"
    finally:
        stack.api("PUT", "/followups/monitoring", location_id, {"enabled": True})

    # When the monitor runs, Then it queues shards, and the shards' jobs reach every lead
    def sent() -> bool:
        return all(any(m["status"] == "sent" for m in messages(stack, location_id, cid)) for cid in leads)

    wait_for(sent, 30, every=0.5)
    text = log.read_text()
    assert "shards=3" in text
    assert "sqs MonitorShardQueue (1 msg)" in text
    for contact_id in leads:
        history = messages(stack, location_id, contact_id)
        assert [m["status"] for m in history] == ["sent"], history
