"""The load run's reconciliation: what the load client sent and saw answered, against what leadflow
holds at the end, read from Redis itself, the webhook function's own metrics and the queues.

- Events: every event of a request answered 200 must be in Redis exactly once: its `seen` key
  (`lf:{loc:cid}:seen:<id>`) is there, once (a workflow body's key carries its 5-minute window:
  two windows for one body would be a double), and no key is there that the client never sent;
  each lead's `s:<signal>` counts equal the signal events the client sent it.
- Spills: the webhook's `EventsReceived` metric (EMF, in the stack's log) counts the events it
  spilled (`outcome=spilled`) and those the intake queue's replay recorded (`replayed_*`); both
  must match, and the intake queue and its dead-letter queue must be empty.
- Follow-ups (dry-run): each lead's history (`lf:{loc:cid}:messages`). No message or agent task
  after the lead's STOP or DND was accepted (its 200 came back to the client), no lead over the
  daily cap on its own clock's day, no message outside sending hours on its clock.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from local.load_plan import LABELS, Event, Lead, Plan, Step


@dataclass(slots=True)
class Outage:
    killed_at: float = 0.0
    restarted_at: float = 0.0
    ready_at: float = 0.0  # the restarted Redis answered PING (its append-only file loaded)
    answered_during: int = 0  # requests answered 200 while Redis was down
    answers_before: int = 0  # requests of the stream answered when it was killed


@dataclass(slots=True)
class Timing:
    started: float = 0.0
    stream_done: float = 0.0  # every first attempt answered
    retries_done: float = 0.0
    settled: float = 0.0
    stack_start_seconds: float = 0.0


@dataclass(slots=True)
class Stored:
    """What Redis and the stack hold at the end."""

    seen: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)  # lead -> event id -> keys
    unknown_seen: int = 0  # seen keys of this run under no lead the client knows
    signals: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)
    profile: dict[tuple[str, str], dict[str, str]] = field(default_factory=dict)
    history: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    stats: dict[str, dict[str, Any]] = field(default_factory=dict)  # location -> GET /followups/stats
    metrics: Counter[str] = field(default_factory=Counter)  # EventsReceived by outcome
    spilled_by_type: Counter[str] = field(default_factory=Counter)
    queues: dict[str, int] = field(default_factory=dict)  # logical id -> messages left
    ghl_requests: Counter[str] = field(default_factory=Counter)  # the GHL stand-in's, by path
    settled: bool = False


def read_redis(client: Any, plan: Plan) -> Stored:
    from leadflow.lead_state import lead_key, lead_prefix

    stored = Stored()
    known = {lead.key for lead in plan.leads}
    for key in client.scan_iter(match="lf:{" + plan.run_id + "-*:seen:*", count=10_000):
        prefix, _, event_id = key.partition("}:seen:")
        location_id, _, contact_id = prefix[len("lf:{") :].partition(":")
        if (location_id, contact_id) not in known:
            stored.unknown_seen += 1
            continue
        if event_id.startswith("wf:"):  # wf:<hash>:<window>: the window is not the event's
            event_id = event_id.rsplit(":", 1)[0]
        stored.seen.setdefault((location_id, contact_id), Counter())[event_id] += 1
    pipe = client.pipeline(transaction=False)
    for lead in plan.leads:
        pipe.hgetall(lead_key(*lead.key))
        pipe.lrange(lead_prefix(*lead.key) + ":messages", 0, -1)
    rows = pipe.execute()
    for i, lead in enumerate(plan.leads):
        fields, history = rows[2 * i], rows[2 * i + 1]
        stored.signals[lead.key] = Counter(
            {name[2:]: int(value.split(" ")[0]) for name, value in fields.items() if name.startswith("s:")}
        )
        stored.profile[lead.key] = {name: value for name, value in fields.items() if name.startswith("p:")}
        stored.history[lead.key] = [json.loads(item) for item in reversed(history)]  # oldest first
    return stored


def read_metrics(log_path: Path) -> tuple[Counter[str], Counter[str]]:
    """EventsReceived from the stack's log (the functions' EMF lines, `python -m local --verbose`):
    events by outcome, and spilled events by event type. Lines of two processes can run together
    (a print's newline is a write of its own), so objects are found, not lines."""
    decoder = json.JSONDecoder()
    text = log_path.read_text(errors="replace")
    outcomes: Counter[str] = Counter()
    spilled: Counter[str] = Counter()
    start = 0
    while (i := text.find('{"_aws"', start)) >= 0:
        try:
            item, start = decoder.raw_decode(text, i)
        except ValueError:
            start = i + 1
            continue
        value = item.get("EventsReceived") if isinstance(item, dict) else None
        if value is None:
            continue
        n = int(sum(value) if isinstance(value, list) else value)
        outcomes[str(item.get("outcome"))] += n
        if item.get("outcome") == "spilled":
            spilled[str(item.get("event_type"))] += n
    return outcomes, spilled


# ---------------------------------------------------------------------------------------------
# The reconciliation


@dataclass(slots=True)
class Line:
    label: str
    value: str
    ok: bool | None = None  # None: a figure, not a check
    note: str = ""


@dataclass(slots=True)
class Section:
    title: str
    lines: list[Line] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)  # a table of its own instead of lines
    rows: list[list[str]] = field(default_factory=list)


@dataclass(slots=True)
class Result:
    sections: list[Section]
    figures: dict[str, Any]

    @property
    def failed(self) -> list[Line]:
        return [line for section in self.sections for line in section.lines if line.ok is False]

    @property
    def ok(self) -> bool:
        return not self.failed


def n(value: float) -> str:
    return f"{value:,.0f}"


def at(entry: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class Rules:
    sending_hours: tuple[int, int]
    max_per_day: int
    interval: int


def reconcile(
    plan: Plan,
    sent: list[Step],
    stored: Stored,
    outage: Outage,
    timing: Timing,
    rules: Rules,
    concurrency: int,
) -> Result:
    firsts = [step for step in sent if step.redelivers is None]
    redeliveries = [step for step in sent if step.redelivers is not None]
    sections = [
        _requests(sent, firsts, redeliveries),
        *_events(plan, firsts, stored),
        _followups(plan, stored, rules),
        _timing(plan, sent, firsts, outage, timing, concurrency),
    ]
    events = sum(len(step.events) for step in firsts)
    messages = sum(1 for h in stored.history.values() for e in h if e.get("status") == "sent")
    figures = {
        "requests": len(sent),
        "events": events,
        "spilled": stored.metrics["spilled"],
        "replayed": sum(v for k, v in stored.metrics.items() if k.startswith("replayed_")),
        "recorded": sum(sum(c.values()) for c in stored.seen.values()),
        "messages": messages,
        "send_seconds": timing.stream_done - timing.started,
    }
    return Result(sections, figures)


def _requests(sent: list[Step], firsts: list[Step], redeliveries: list[Step]) -> Section:
    section = Section("Requests (signed webhooks over HTTP)")
    first_status = Counter(step.attempts[0].status for step in sent)
    retried = [step for step in sent if len(step.attempts) > 1]
    throttled = [step for step in retried if step.attempts[0].status == 429]
    other = Counter(a.status for step in sent for a in step.attempts if a.status not in (200, 429))
    unanswered = [step for step in sent if not step.ok]
    section.lines += [
        Line("requests sent", n(len(sent)), note=f"{n(len(firsts))} distinct + {n(len(redeliveries))} redeliveries"),
        Line("answered 200 at once", n(first_status[200])),
        Line("answered 429, then 200 on a later retry", n(len(throttled)), len(throttled) == first_status[429]),
        Line(
            "other statuses (0 = no answer)",
            n(sum(other.values())),
            not other,
            ", ".join(f"{status}: {count}" for status, count in sorted(other.items())),
        ),
        Line("requests without a 200 at the end", n(len(unanswered)), not unanswered),
    ]
    outcomes = Counter(step.attempts[-1].outcome for step in redeliveries if step.ok)
    section.lines.append(
        Line(
            "redeliveries (a request sent again as is)",
            n(len(redeliveries)),
            note="answered " + ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())) if outcomes else "",
        )
    )
    not_accepted = Counter(
        step.attempts[-1].outcome for step in firsts if step.ok and step.attempts[-1].outcome != "accepted"
    )
    section.lines.append(
        Line(
            "distinct requests not answered `accepted`",
            n(sum(not_accepted.values())),
            not not_accepted,
            ", ".join(f"{k} {v}" for k, v in not_accepted.items()),
        )
    )
    return section


def _expected(firsts: Iterable[Step]) -> dict[tuple[str, str], dict[str, Event]]:
    expected: dict[tuple[str, str], dict[str, Event]] = defaultdict(dict)
    for step in firsts:
        if step.ok:
            for event in step.events:
                expected[event.lead.key][event.seen_id] = event
    return expected


def _events(plan: Plan, firsts: list[Step], stored: Stored) -> list[Section]:
    expected = _expected(firsts)
    by_kind = Section("Events sent, by kind", columns=["kind", "requests", "events", "recorded in Redis"])
    requests, events, recorded = Counter[str](), Counter[str](), Counter[str]()
    missing, doubled = 0, 0
    for step in firsts:
        requests[step.kind] += 1
        events[step.kind] += len(step.events)
    for lead_key, ids in expected.items():
        found = stored.seen.get(lead_key, Counter())
        for seen_id, event in ids.items():
            copies = found.get(seen_id, 0)
            recorded[event.kind] += min(copies, 1)
            missing += copies == 0
            doubled += max(0, copies - 1)
    unexpected = stored.unknown_seen + sum(
        copies
        for key, found in stored.seen.items()
        for seen_id, copies in found.items()
        if seen_id not in expected.get(key, {})
    )
    for kind, label in LABELS.items():
        if requests[kind]:
            by_kind.rows.append([label, n(requests[kind]), n(events[kind]), n(recorded[kind])])
    by_kind.rows.append(["total", n(sum(requests.values())), n(sum(events.values())), n(sum(recorded.values()))])

    section = Section("Reconciliation (counted from Redis itself, and the webhook function's metrics)")
    accepted = sum(len(ids) for ids in expected.values())
    seen_keys = sum(sum(found.values()) for found in stored.seen.values()) + stored.unknown_seen
    spilled = stored.metrics["spilled"]
    replayed = {k.removeprefix("replayed_"): v for k, v in stored.metrics.items() if k.startswith("replayed_")}
    replayed_total = sum(replayed.values())
    signal_sent: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for lead_key, ids in expected.items():
        for event in ids.values():
            if event.signal:
                signal_sent[lead_key][event.signal] += 1
    signals_sent = sum(sum(c.values()) for c in signal_sent.values())
    signals_stored = sum(sum(c.values()) for c in stored.signals.values())
    leads_off = [
        lead for lead in plan.leads if stored.signals.get(lead.key, Counter()) != signal_sent.get(lead.key, Counter())
    ]
    stopped = [lead for lead in plan.leads if lead.stopped_at is not None]
    dnd = [lead for lead in plan.leads if lead.dnd_on_at is not None]
    section.lines += [
        Line("events sent (distinct)", n(sum(events.values()))),
        Line("events accepted (their request answered 200)", n(accepted), accepted == sum(events.values())),
        Line(
            "events spilled to the intake queue",
            n(spilled),
            spilled > 0,
            ", ".join(f"{k} {v}" for k, v in sorted(stored.spilled_by_type.items())) or "none: did the outage happen?",
        ),
        Line(
            "spilled events replayed into Redis",
            n(replayed_total),
            replayed_total == spilled,
            ", ".join(f"{k} {v}" for k, v in sorted(replayed.items())),
        ),
        Line(
            "intake queue / its dead-letter queue at the end",
            f"{stored.queues.get('IntakeQueue', -1)} / {stored.queues.get('IntakeDLQ', -1)}",
            stored.queues.get("IntakeQueue") == 0 and stored.queues.get("IntakeDLQ") == 0,
        ),
        Line("events recorded in Redis (seen keys)", n(seen_keys), seen_keys == accepted, "= events accepted"),
        Line("  accepted events missing from Redis (lost)", n(missing), missing == 0),
        Line("  recorded twice (doubled)", n(doubled), doubled == 0),
        Line("  recorded but never sent", n(unexpected), unexpected == 0),
        Line(
            "signal events in Redis (s:<signal> counts)",
            n(signals_stored),
            signals_stored == signals_sent and not leads_off,
            f"= {n(signals_sent)} accepted events with a signal; leads that differ: {len(leads_off)}",
        ),
        Line(
            "leads opted out in Redis / STOPs accepted",
            f"{sum(stored.profile[lead.key].get('p:opted_out') == '1' for lead in stopped)} / {len(stopped)}",
            all(stored.profile[lead.key].get("p:opted_out") == "1" for lead in stopped) and bool(stopped),
            f"{sum(lead.stop_in_outage for lead in stopped)} sent while Redis was down",
        ),
        Line(
            "leads with DND in Redis / DND switched on",
            f"{sum(stored.profile[lead.key].get('p:dnd') == '1' for lead in dnd)} / {len(dnd)}",
            all(stored.profile[lead.key].get("p:dnd") == "1" for lead in dnd),
        ),
    ]
    return [by_kind, section]


def _followups(plan: Plan, stored: Stored, rules: Rules) -> Section:
    section = Section(f"Follow-ups (SEND_MODE=dry-run; the monitor every {rules.interval} s)")
    start, end = rules.sending_hours
    after_stop, after_dnd, over_cap, outside, sent, tasks = [], [], [], [], 0, 0
    channels: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    for lead in plan.leads:
        zone = ZoneInfo(lead.zone)
        per_day: Counter[str] = Counter()
        for entry in stored.history.get(lead.key, []):
            status = entry.get("status")
            if status == "skipped":
                skipped[str(entry.get("reason"))] += 1
            if status not in ("sent", "handed_off"):
                continue
            when = at(entry)
            if lead.stopped_at is not None and when > lead.stopped_at:
                after_stop.append((lead, entry))
            if lead.dnd_on_at is not None and when > lead.dnd_on_at:
                after_dnd.append((lead, entry))
            if status == "handed_off":
                tasks += 1
                continue
            sent += 1
            channels[str(entry.get("channel"))] += 1
            local = datetime.fromtimestamp(when, zone)
            per_day[local.date().isoformat()] += 1
            if not start <= local.hour < end:
                outside.append((lead, entry))
        over_cap += [(lead, day) for day, count in per_day.items() if count > rules.max_per_day]
    stats = stored.stats.values()
    queued = sum(int(s.get("total_tasks", 0)) for s in stats)
    stat_sent = sum(int(s.get("sent", 0)) for s in stats)
    failed = sum(int(s.get("failed", 0)) for s in stats)
    dlq = stored.queues.get("FollowupDLQ", -1)
    stopped = [lead for lead in plan.leads if lead.stopped_at is not None]
    dnd = [lead for lead in plan.leads if lead.dnd_on_at is not None]
    before_stop = sum(
        any(_followed_up(e, lead.stopped_at) for e in stored.history.get(lead.key, [])) for lead in stopped
    )
    before_dnd = sum(any(_followed_up(e, lead.dnd_on_at) for e in stored.history.get(lead.key, [])) for lead in dnd)
    section.lines += [
        Line("follow-up jobs queued (monitor and fast path)", n(queued)),
        Line(
            "messages sent (dry-run: the outbox)",
            n(sent),
            sent > 0 and sent == stat_sent,
            ", ".join(f"{k} {v}" for k, v in sorted(channels.items())) + f"; stats say {n(stat_sent)}",
        ),
        Line("agent tasks (handoffs)", n(tasks)),
        Line(
            "skipped at send time",
            n(sum(skipped.values())),
            note=", ".join(f"{k} {v}" for k, v in sorted(skipped.items())),
        ),
        Line("jobs failed / in the follow-up dead-letter queue", f"{failed} / {dlq}", failed == 0 and dlq == 0),
        Line(
            "all jobs ended, queues drained (settled)",
            "yes" if stored.settled else "no",
            stored.settled,
            f"{stored.queues.get('FollowupQueue', -1)} left on the follow-up queue",
        ),
        Line(
            "messages or tasks after the lead's STOP was accepted",
            n(len(after_stop)),
            not after_stop,
            f"{len(stopped)} leads opted out, {before_stop} of them followed up before" + _examples(after_stop),
        ),
        Line(
            "messages or tasks after the lead's DND was switched on",
            n(len(after_dnd)),
            not after_dnd,
            f"{len(dnd)} leads, {before_dnd} of them followed up before" + _examples(after_dnd),
        ),
        Line(f"leads over the daily cap ({rules.max_per_day} a day, its own clock)", n(len(over_cap)), not over_cap),
        Line(
            f"messages outside sending hours ({start}-{end}, its own clock)",
            n(len(outside)),
            not outside,
            _examples(outside),
        ),
        Line(
            "messages posted to GHL (its stand-in)",
            n(stored.ghl_requests["/conversations/messages"]),
            stored.ghl_requests["/conversations/messages"] == 0,
            "dry-run: nothing is sent",
        ),
    ]
    return section


def _followed_up(entry: dict[str, Any], before: float | None) -> bool:
    return before is not None and entry.get("status") in ("sent", "handed_off") and at(entry) <= before


def _examples(found: list[tuple[Lead, Any]]) -> str:
    if not found:
        return ""
    lead, entry = found[0]
    return f"; e.g. {lead.location_id}/{lead.contact_id}: {entry}"


def _timing(
    plan: Plan, sent: list[Step], firsts: list[Step], outage: Outage, timing: Timing, concurrency: int
) -> Section:
    section = Section("Time")
    send = max(timing.stream_done - timing.started, 1e-9)
    events = sum(len(step.events) for step in firsts)
    stream = [step for step in sent if step.index >= 0]
    section.lines += [
        Line("local stack started in", f"{timing.stack_start_seconds:.1f} s"),
        Line(
            "sending (every request answered once)",
            f"{send:.1f} s",
            note=f"{len(stream) / send:.0f} requests/s, {events / send:.0f} events/s, {concurrency} in flight",
        ),
        Line(
            "Redis down",
            f"{outage.ready_at - outage.killed_at:.1f} s" if outage.killed_at else "never",
            note=(
                f"killed (SIGKILL) after {n(outage.answers_before)} answers; restarted "
                f"{outage.restarted_at - outage.killed_at:.1f} s later, its append-only file loaded "
                f"{outage.ready_at - outage.restarted_at:.1f} s after; {n(outage.answered_during)} requests "
                "answered 200 meanwhile"
            )
            if outage.killed_at
            else "",
        ),
        Line("429 retries", f"{max(0.0, timing.retries_done - timing.stream_done):.1f} s"),
        Line("follow-ups settled after", f"{timing.settled - timing.retries_done:.1f} s"),
        Line("total", f"{timing.settled - timing.started + timing.stack_start_seconds:.1f} s"),
    ]
    return section


# ---------------------------------------------------------------------------------------------
# The table


def render(result: Result, title: str) -> str:
    width = 58
    out = [title, "=" * len(title)]
    for section in result.sections:
        out += ["", section.title]
        if section.columns:
            widths = [
                max(len(str(row[i])) for row in [section.columns, *section.rows]) for i in range(len(section.columns))
            ]
            fmt = "  " + "  ".join(f"{{:{'<' if i == 0 else '>'}{w}}}" for i, w in enumerate(widths))
            out.append(fmt.format(*section.columns))
            out += [fmt.format(*row) for row in section.rows]
            continue
        for line in section.lines:
            mark = {True: "ok  ", False: "FAIL", None: "    "}[line.ok]
            text = f"  {line.label:<{width}} {line.value:>12}  {mark}"
            out.append(text + (f"  {line.note}" if line.note else ""))
    verdict = "PASS: every line holds" if result.ok else f"FAIL: {len(result.failed)} line(s) do not hold"
    out += ["", verdict]
    return "\n".join(out)
