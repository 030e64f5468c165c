"""The load run's traffic: a few hundred leads over a few locations, and a reproducible stream of
webhooks of every kind leadflow takes, built and signed at the moment each is sent.

Kinds: GHL ContactCreate (each lead's first event), ContactUpdate, InboundMessage replies (SMS),
STOP replies (opt-outs), ContactDndUpdate; activity batches (Standard Webhooks, 1-6 events a
request); workflow calls (bearer token). About 1% of the requests are redeliveries: an earlier
GHL or activity request sent again byte for byte, as GHL's at-least-once delivery does.

Each event carries the id leadflow de-duplicates it by (the `seen` key it must leave in Redis):
GHL's `webhookId` (`ghl:<id>`), an activity event's own `id` (`act:<id>`), a workflow body's hash
(`wf:<hash>`, which leadflow suffixes with its 5-minute window). So the reconciliation is by
identity: every event accepted is in Redis once, none missing and none twice.

Leads that opt out are quiet until a burst of strong signals makes them urgent (the fast path
queues a job at once), then reply STOP two requests later: their job races the opt-out. A few
others send STOP while Redis is down (the load client sends those): the STOP is spilled, and no
follow-up may go out before it is replayed.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

ROUTE = {
    "contact_create": "ghl",
    "contact_update": "ghl",
    "reply": "ghl",
    "stop": "ghl",
    "dnd_update": "ghl",
    "activity": "activity",
    "workflow": "workflow",
}
LABELS = {
    "contact_create": "GHL ContactCreate",
    "contact_update": "GHL ContactUpdate",
    "reply": "GHL InboundMessage (a reply)",
    "stop": "GHL InboundMessage STOP",
    "dnd_update": "GHL ContactDndUpdate",
    "activity": "activity (batches of 1-6)",
    "workflow": "workflow call",
}
# Shares of the mixed stream (after each lead's ContactCreate and the planned STOPs and DND changes).
MIX = {"activity": 0.50, "workflow": 0.12, "contact_update": 0.16, "reply": 0.10, "dnd_update": 0.05}
REDELIVERY_SHARE = 0.01
REDELIVERY_LAG = (20, 200)  # how many requests back a redelivery repeats
SIGNALS = {
    "seller": ("pricing_tool_usage", "neighborhood_research", "market_report_engagement", "website_visit"),
    "buyer": ("property_search", "listing_view", "virtual_tour_view", "neighborhood_research", "website_visit"),
    "browser": ("website_visit", "email_open", "listing_view"),
}
# From nothing to urgent (81) in one batch, so the webhook's fast path queues a job at once.
URGENT_BURST = (
    ("pricing_tool_usage",) * 3
    + ("neighborhood_research",) * 2
    + ("market_report_engagement",) * 2
    + ("property_search",) * 3
)
FORM_SOURCE, AD_SOURCE = "Home Value Form", "Facebook Ad"  # a form's ContactCreate is an agent inquiry
REPLIES = ("Yes, still looking", "Can we see it Saturday?", "What would mine sell for?", "Thanks!", "Call me later")
AREA_CODES = ("617", "312", "206", "512", "303", "415", "212", "702")  # none in Florida (its own rules)
NAMES = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jon", "Kemi", "Luis")


def zone_at(local_hour: int, now: float) -> str:
    """A fixed-offset IANA zone in which it is `local_hour` o'clock at `now` (Etc/GMT signs are inverted)."""
    offset = (local_hour - int(now // 3600) % 24) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True)
class Lead:
    location_id: str
    contact_id: str
    zone: str
    local_hour: int  # its local hour when the plan was made
    archetype: str  # seller | buyer | browser
    source: str
    first_name: str
    area_code: str
    talks: bool = False  # replies by SMS (each reply pauses its follow-ups)
    stop_at: int | None = None  # stream position of its STOP (quiet before its urgent burst)
    stop_in_outage: bool = False  # its STOP is sent while Redis is down
    dnd_at: int | None = None  # stream position of its DND being switched on
    # What the load client saw: when leadflow accepted its STOP / its DND (the 200 came back).
    stopped_at: float | None = None
    dnd_on_at: float | None = None

    @property
    def key(self) -> tuple[str, str]:
        return self.location_id, self.contact_id

    def quiet(self, position: int) -> bool:
        """Before its urgent burst, an opting-out lead sends nothing but its ContactCreate."""
        start = self.stop_at - 2 if self.stop_at is not None else None
        return start is not None and position < start


@dataclass(slots=True)
class Event:
    kind: str
    lead: Lead
    seen_id: str  # as leadflow records it (a workflow's without its window suffix)
    signal: str | None


@dataclass(slots=True)
class Attempt:
    sent: float
    answered: float
    status: int  # 0: no answer (a timeout, a refused connection)
    outcome: str  # the body's status: accepted | duplicate | ignored; or the error


@dataclass(slots=True)
class Step:
    """One request of the plan, built (and signed) when first sent."""

    index: int
    kind: str
    lead: Lead
    signals: tuple[str, ...] = ()
    redelivers: Step | None = None
    route: str = ""
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    attempts: list[Attempt] = field(default_factory=list)
    built: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def ok(self) -> bool:
        return bool(self.attempts) and self.attempts[-1].status == 200

    @property
    def answered_at(self) -> float | None:
        return self.attempts[-1].answered if self.ok else None


@dataclass(slots=True)
class Keys:
    """What the load client signs with: the local stack's keys."""

    ghl_private: Any  # Ed25519PrivateKey
    signing_secret: str
    workflow_token: str


class Plan:
    def __init__(self, webhooks: int, leads: int, locations: int, seed: int, now: float | None = None) -> None:
        if leads < 20 or locations < 1 or webhooks < leads * 3:
            raise ValueError("a load run needs at least 20 leads, a location, and 3 webhooks a lead")
        self.rng = random.Random(seed)  # noqa: S311  # nosec B311 # reproducible traffic, not secrets
        self.run_id = f"load-{uuid.UUID(int=self.rng.getrandbits(128)).hex[:6]}"
        self.locations = [f"{self.run_id}-{i}" for i in range(locations)]
        self.now = time.time() if now is None else now
        self.leads = [self._lead(i) for i in range(leads)]
        self.kill_after = len(self.leads) + (webhooks - len(self.leads)) // 2  # requests answered before Redis dies
        self.steps = self._stream(webhooks)
        # Sent by the load client while Redis is down: for each of these leads, the burst that makes
        # it urgent, then its STOP (both spilled; their replays may come in either order).
        self.outage_steps: list[Step] = []
        for lead in (lead for lead in self.leads if lead.stop_in_outage):
            self.outage_steps.append(Step(-1 - len(self.outage_steps), "activity", lead, URGENT_BURST))
            self.outage_steps.append(Step(-1 - len(self.outage_steps), "stop", lead))

    # ------------------------------------------------------------------ leads
    def _lead(self, i: int) -> Lead:
        rng = self.rng
        archetype = rng.choices(("seller", "buyer", "browser"), (0.3, 0.35, 0.35))[0]
        # 60% where it is daytime, 25% at night (quiet hours), 15% in the evening near their end.
        hours = rng.choices(((9, 10, 11, 12, 13, 14, 15, 16, 17), (2, 3, 4), (20,)), (0.6, 0.25, 0.15))[0]
        local_hour = rng.choice(hours)
        return Lead(
            location_id=self.locations[i % len(self.locations)],
            contact_id=f"c{i:04d}",
            zone=zone_at(local_hour, self.now),
            local_hour=local_hour,
            archetype=archetype,
            source=FORM_SOURCE if rng.random() < 0.3 else AD_SOURCE,
            first_name=rng.choice(NAMES),
            area_code=rng.choice(AREA_CODES),
        )

    # ------------------------------------------------------------------ the stream
    def _stream(self, webhooks: int) -> list[Step]:
        rng, leads = self.rng, self.leads
        n = len(leads)
        daytime_ad = [lead for lead in leads if 9 <= lead.local_hour <= 17 and lead.source == AD_SOURCE]
        rng.shuffle(daytime_ad)
        # Opt-outs: 10% of the leads, taken among daytime leads (the ones leadflow would text);
        # 2% of them (at least 2) send their STOP while Redis is down.
        stoppers = daytime_ad[: max(4, n // 10)]
        outage = stoppers[: max(2, n // 50)]
        rest = [lead for lead in leads if lead not in stoppers]
        for lead in rng.sample(rest, max(2, n // 20)):  # 5% have their DND switched on
            lead.dnd_at = rng.randrange(n, webhooks)
        for lead in rng.sample(rest, max(2, n // 5)):
            lead.talks = True
        planned: dict[int, list[tuple[str, Lead, tuple[str, ...]]]] = {}
        for lead in stoppers:
            lead.stop_in_outage = lead in outage
            if lead.stop_in_outage:  # quiet until Redis dies; the load client sends its burst and STOP then
                lead.stop_at = self.kill_after + 2
                continue
            # A burst that makes the lead urgent, then its STOP two requests later.
            at = rng.randrange(n + 50, n + int((webhooks - n) * 0.9))
            lead.stop_at = at + 2
            planned.setdefault(at, []).append(("activity", lead, URGENT_BURST))
            planned.setdefault(lead.stop_at, []).append(("stop", lead, ()))
        for lead in leads:
            if lead.dnd_at is not None:
                planned.setdefault(lead.dnd_at, []).append(("dnd_update", lead, ()))
        creates = leads[:]
        rng.shuffle(creates)
        steps = [Step(i, "contact_create", lead) for i, lead in enumerate(creates)]
        kinds, weights = list(MIX), list(MIX.values())
        talkers = [lead for lead in leads if lead.talks]
        due = sorted((at, i, item) for at, items in planned.items() for i, item in enumerate(items))
        while len(steps) < webhooks:
            if due and due[0][0] <= len(steps):  # a planned step (it may come a little late: never skipped)
                kind, lead, planned_signals = due.pop(0)[2]
                steps.append(Step(len(steps), kind, lead, planned_signals))
                continue
            position = len(steps)
            if rng.random() < REDELIVERY_SHARE and position > n + REDELIVERY_LAG[1]:
                earlier = steps[position - rng.randrange(*REDELIVERY_LAG)]
                if earlier.kind in ("activity", "contact_update", "reply", "dnd_update") and not earlier.redelivers:
                    steps.append(Step(len(steps), earlier.kind, earlier.lead, redelivers=earlier))
                    continue
            kind = rng.choices(kinds, weights)[0]
            pool = talkers if kind == "reply" else leads
            lead = rng.choice(pool)
            while lead.quiet(position) or (kind == "dnd_update" and lead.dnd_at is not None):
                lead = rng.choice(pool if kind != "dnd_update" else leads)
            signals: tuple[str, ...] = ()
            if kind == "activity":
                signals = tuple(rng.choice(SIGNALS[lead.archetype]) for _ in range(rng.randint(1, 6)))
            elif kind == "workflow":
                signals = (rng.choice(SIGNALS[lead.archetype]),)
            steps.append(Step(len(steps), kind, lead, signals))
        return steps[:webhooks]

    def stream(self) -> Iterator[Step]:
        return iter(self.steps)

    # ------------------------------------------------------------------ building a request
    def build(self, step: Step, keys: Keys) -> Step:
        """Give the step its body, headers and events, signed now; once (a redelivery builds its
        original if no thread has yet)."""
        with step.lock:
            if step.built:
                return step
            if step.redelivers is not None:
                original = self.build(step.redelivers, keys)
                step.route, step.body, step.headers = original.route, original.body, original.headers
            else:
                step.route = ROUTE[step.kind]
                payload, events = getattr(self, f"_{step.route}")(step)
                step.body = json.dumps(payload, separators=(",", ":")).encode()
                step.headers = self._sign(step.route, step.body, keys)
                if step.route == "workflow":
                    seen = "wf:" + hashlib.sha256(step.body).hexdigest()[:40]
                    events = [Event(e.kind, e.lead, seen, e.signal) for e in events]
                step.events = events
            step.built = True
            return step

    def _ghl(self, step: Step) -> tuple[dict[str, Any], list[Event]]:
        lead, kind = step.lead, step.kind
        at = time.time()
        webhook_id = str(uuid.uuid4())
        payload: dict[str, Any] = {"locationId": lead.location_id, "webhookId": webhook_id, "timestamp": iso(at)}
        signal = None
        if kind in ("contact_create", "contact_update"):
            payload |= {
                "type": "ContactCreate" if kind == "contact_create" else "ContactUpdate",
                "id": lead.contact_id,
                "firstName": lead.first_name,
                "lastName": "Load",
                "phone": f"+1{lead.area_code}555{int(lead.contact_id[1:]) % 10_000:04d}",
                "email": f"{lead.contact_id}@example.com",
                "timezone": lead.zone,
                "source": lead.source,
                "tags": ["load"],
            }
            if kind == "contact_create" and lead.source == FORM_SOURCE:
                signal = "agent_inquiry"
        elif kind in ("reply", "stop"):
            body = "STOP" if kind == "stop" else REPLIES[step.index % len(REPLIES)]
            payload |= {"type": "InboundMessage", "contactId": lead.contact_id, "messageType": "SMS", "body": body}
            payload |= {"direction": "inbound", "messageId": f"m-{uuid.uuid4().hex[:12]}"}
            signal = None if kind == "stop" else "sms_response"
        else:  # dnd_update: on for good from its planned moment, else a change that blocks nothing
            on = lead.dnd_at is not None
            status = "active" if on else "inactive"
            payload |= {"type": "ContactDndUpdate", "id": lead.contact_id, "dnd": on}
            payload["dndSettings"] = {channel: {"status": status} for channel in ("SMS", "Email", "Call")}
        return payload, [Event(kind, lead, f"ghl:{webhook_id}", signal)]

    def _activity(self, step: Step) -> tuple[dict[str, Any], list[Event]]:
        lead, events, items = step.lead, [], []
        for signal in step.signals:
            own = uuid.uuid4().hex
            items.append(
                {
                    "type": "activity",
                    "id": own,
                    "location_id": lead.location_id,
                    "contact_id": lead.contact_id,
                    "signal": signal,
                    "occurred_at": iso(time.time()),
                    "meta": {"page": f"/{signal}"},
                }
            )
            events.append(Event("activity", lead, f"act:{own}", signal))
        return (items[0] if len(items) == 1 else {"events": items}), events

    def _workflow(self, step: Step) -> tuple[dict[str, Any], list[Event]]:
        lead = step.lead
        payload = {
            "contact_id": lead.contact_id,
            "first_name": lead.first_name,
            "location": {"id": lead.location_id, "name": "Load Realty"},
            "workflow": {"id": str(uuid.uuid4()), "name": "Load test"},
            "customData": {"signal": step.signals[0], "occurred_at": iso(time.time())},
        }
        return payload, [Event("workflow", lead, "", step.signals[0])]  # its id: the body's hash

    @staticmethod
    def _sign(route: str, body: bytes, keys: Keys) -> dict[str, str]:
        import base64

        if route == "ghl":
            signature = base64.b64encode(keys.ghl_private.sign(body)).decode()
            return {"content-type": "application/json", "x-ghl-signature": signature}
        if route == "activity":
            from leadflow.cli import sign_activity

            return sign_activity(body, keys.signing_secret)
        return {"content-type": "application/json", "authorization": f"Bearer {keys.workflow_token}"}
