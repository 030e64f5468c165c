"""The load run's traffic and its reading of metrics: the requests it builds are what leadflow takes
(signatures verify, parsing gives the events and de-duplication ids the reconciliation expects)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from leadflow.config import Settings
from leadflow.intake import activity, ghl, workflow
from leadflow.intake.verify import verify_bearer, verify_ghl, verify_standard
from leadflow.signals import Signal
from local.keys import LocalKeys, ensure
from local.load_plan import LABELS, URGENT_BURST, Keys, Plan, Step
from local.load_report import read_metrics


@pytest.fixture(scope="module")
def local_keys(tmp_path_factory: pytest.TempPathFactory) -> LocalKeys:
    return ensure(tmp_path_factory.mktemp("load-keys"))


@pytest.fixture(scope="module")
def keys(local_keys: LocalKeys) -> Keys:
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(local_keys.ghl_private_pem, password=None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    return Keys(private, local_keys.signing_secret, local_keys.workflow_token)


def test_a_plan_is_reproducible_and_mixes_every_kind() -> None:
    one, two = Plan(3000, 60, 3, seed=7, now=0.0), Plan(3000, 60, 3, seed=7, now=0.0)

    assert [(s.kind, s.lead.contact_id, s.signals) for s in one.steps] == [
        (s.kind, s.lead.contact_id, s.signals) for s in two.steps
    ]
    assert len(one.steps) == 3000
    assert set(Counter(s.kind for s in one.steps)) == set(LABELS)
    assert {s.kind for s in one.steps[:60]} == {"contact_create"}  # each lead's first event
    assert {lead.location_id for lead in one.leads} == set(one.locations)


def test_opting_out_leads_are_quiet_until_the_burst_that_makes_them_urgent_then_stop() -> None:
    plan = Plan(3000, 60, 3, seed=7, now=0.0)
    stoppers = [lead for lead in plan.leads if lead.stop_at is not None]

    assert len([lead for lead in stoppers if lead.stop_in_outage]) >= 2
    for lead in stoppers:
        mine = [s for s in plan.steps if s.lead is lead and s.kind != "contact_create"]
        if lead.stop_in_outage:  # sent by the load client while Redis is down: burst, then STOP
            assert all(s.index >= plan.kill_after for s in mine)
            assert [s.kind for s in plan.outage_steps if s.lead is lead] == ["activity", "stop"]
        else:
            assert mine[0].signals == URGENT_BURST
            assert mine[1].kind == "stop"


def test_redeliveries_repeat_an_earlier_ghl_or_activity_request_byte_for_byte(keys: Keys) -> None:
    plan = Plan(3000, 60, 3, seed=7)
    again = [s for s in plan.steps if s.redelivers is not None]

    assert again
    assert all(s.redelivers.kind != "workflow" and s.redelivers.index < s.index for s in again)  # type: ignore[union-attr]
    step = plan.build(again[0], keys)
    original = again[0].redelivers
    assert original is not None
    assert (step.body, step.headers) == (original.body, original.headers)
    assert step.events == []  # its events are the original's


def parsed_ids(step: Step, local_keys: LocalKeys) -> list[tuple[str, str | None]]:
    """What leadflow makes of a built request: (de-duplication id, signal) per event."""
    now = time.time()
    payload = json.loads(step.body)
    if step.route == "ghl":
        verify_ghl(step.body, step.headers, local_keys.ghl_public_key, None)
        parsed = ghl.parse(
            payload, step.body, now=now, received_at=now, location_hint="", config=Settings(), replay=False
        )
    elif step.route == "activity":
        webhook_id = verify_standard(step.body, step.headers, local_keys.signing_secret)
        parsed = activity.parse(payload, webhook_id=webhook_id, received_at=now, location_hint="")
    else:
        verify_bearer(step.headers, local_keys.workflow_token)
        event_id = workflow.dedupe_id(step.body, now).rsplit(":", 1)[0]  # the window aside, as the report does
        parsed = workflow.parse(payload, event_id=event_id, received_at=now, location_hint="")
    assert all(a.location_id == step.lead.location_id and a.contact_id == step.lead.contact_id for a in parsed.actions)
    return [(str(a.event_id), a.signal.value if a.signal else None) for a in parsed.actions]


def test_every_built_request_verifies_and_parses_to_the_events_the_reconciliation_expects(
    keys: Keys, local_keys: LocalKeys
) -> None:
    plan = Plan(3000, 60, 3, seed=7)
    firsts: dict[tuple[str, str, bool], Step] = {}
    for step in [*plan.steps, *plan.outage_steps]:
        if step.redelivers is None:
            firsts.setdefault((step.kind, step.lead.source, len(step.signals) > 1), step)

    for step in firsts.values():
        plan.build(step, keys)
        assert parsed_ids(step, local_keys) == [(e.seen_id, e.signal) for e in step.events], step.kind
    kinds = {step.kind for step in firsts.values()}
    assert kinds == set(LABELS)
    stop = next(s for s in firsts.values() if s.kind == "stop")
    assert stop.events[0].signal is None
    form = next(s for s in firsts.values() if s.kind == "contact_create" and s.lead.source == "Home Value Form")
    assert form.events[0].signal == Signal.AGENT_INQUIRY.value


def test_metrics_are_read_from_emf_objects_even_when_two_processes_lines_run_together(tmp_path: Path) -> None:
    def emf(outcome: str, value: float, event_type: str = "activity") -> str:
        return json.dumps(
            {
                "_aws": {"CloudWatchMetrics": [{"Namespace": "leadflow", "Metrics": [{"Name": "EventsReceived"}]}]},
                "event_type": event_type,
                "outcome": outcome,
                "EventsReceived": [value],
            }
        )

    log = tmp_path / "stack.log"
    log.write_text(
        "12:00:00.000  stack     ready\n"
        + emf("spilled", 3.0)
        + emf("spilled", 1.0, "InboundMessage")  # its newline was written after the next object
        + "\n\n"
        + '{"level":"INFO","message":"webhook event"}\n'
        + emf("replayed_accepted", 2.0)
        + "\n"
        + emf("replayed_duplicate", 2.0)
        + "\n"
        + '{"_aws": {"CloudWatchMetrics": []}, "MessagesSent": [1.0]}\n'
    )

    outcomes, spilled = read_metrics(log)

    assert outcomes == Counter({"spilled": 4, "replayed_accepted": 2, "replayed_duplicate": 2})
    assert spilled == Counter({"activity": 3, "InboundMessage": 1})
