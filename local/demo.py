"""`make demo`: the whole bundle on this machine, a scripted scenario, a summary.

Starts the local stack (`python -m local`, its log in .local-stack/demo.log), sends signed GHL,
activity and workflow webhooks over HTTP for four leads, lets the monitor (every 2 s here) and the
send function run, then reads everything back over the HTTP API with a local JWT and prints:

- a seller researching home values: ContactCreate from a home-value form, pricing tool, neighbourhood
  research, market reports: urgent, and a call is recommended, so the webhook's fast path hands her
  to her agent (a GHL task) within a second, never an automated text;
- a buyer searching listings: property searches, listing views, a virtual tour: hot, followed up by
  the monitor's next run;
- a lead who replies STOP: opted out, then nothing, even on demand (409 opted_out);
- a cold lead with one website visit: below the monitor's threshold, left alone.

Messages are dry-run (the outbox); with ANTHROPIC_API_KEY set Claude writes them. The outbox also
shows what leadflow would write to each GHL contact (score, intent, why, the `leadflow:<intent>` tag).
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from local.ghl_standin import CLIENT_ID, CLIENT_SECRET, GhlStandIn
from local.keys import STATE_DIR, LocalKeys, ensure
from local.launch import StackFailed, launch
from local.template import ROOT

INTERVAL = 2  # seconds between monitor runs in the demo
INSTALL_CODE = "demo-install-code"  # the authorization code GHL's stand-in hands the callback
SETTLE_SECONDS = 20  # the most the demo waits for follow-ups to finish
# Zones for the demo's leads, US first: the first one where it is daytime now, so the quiet-hours
# guardrail (SENDING_HOURS, 8-21 local) lets the messages go whenever the demo runs.
ZONES = (
    "America/New_York",
    "America/Chicago",
    "America/Denver",
    "America/Los_Angeles",
    "America/Anchorage",
    "Pacific/Honolulu",
    "Pacific/Auckland",
    "Australia/Sydney",
    "Asia/Tokyo",
    "Asia/Shanghai",
    "Asia/Bangkok",
    "Asia/Kolkata",
    "Asia/Dubai",
    "Europe/Athens",
    "Europe/Berlin",
    "Europe/London",
    "Atlantic/Azores",
    "America/Noronha",
    "America/Sao_Paulo",
)


def daytime_zone(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    for zone in ZONES:
        if 9 <= now.astimezone(ZoneInfo(zone)).hour < 19:
            return zone
    return ZONES[0]


@dataclass(slots=True)
class Lead:
    contact_id: str
    name: str
    story: str
    first_name: str = ""
    sent_at: list[float] = field(default_factory=list)  # when each of its webhooks was sent
    replies: list[str] = field(default_factory=list)

    @property
    def last_event_at(self) -> float:
        return max(self.sent_at, default=0.0)

    def delay(self, at: float) -> float:
        """Seconds from the lead's latest webhook before `at` to `at` (speed to lead)."""
        before = [t for t in self.sent_at if t <= at]
        return at - max(before) if before else 0.0


class Demo:
    def __init__(self, base: str, keys: LocalKeys, location_id: str, zone: str, console: Any) -> None:
        import httpx

        self.base = base
        self.keys = keys
        self.location_id = location_id
        self.zone = zone
        self.console = console
        self.http = httpx.Client(base_url=base, timeout=30)
        self.token = keys.token(subject="demo")

    # ------------------------------------------------------------------ webhooks in
    def ghl(self, lead: Lead, kind: str, **fields: Any) -> str:
        from leadflow.cli import ghl_event, sign_ghl

        body = json.dumps(ghl_event(kind, self.location_id, lead.contact_id, **fields)).encode()
        return self._post(lead, "/webhooks/ghl", body, sign_ghl(body, self.keys.ghl_private_pem), kind)

    def activity(self, lead: Lead, signal_name: str, **meta: Any) -> str:
        from leadflow.cli import activity_event, sign_activity

        body = json.dumps(activity_event(self.location_id, lead.contact_id, signal_name, **meta)).encode()
        return self._post(lead, "/webhooks/activity", body, sign_activity(body, self.keys.signing_secret), signal_name)

    def workflow(self, lead: Lead, signal_name: str) -> str:
        from leadflow.cli import now_iso, workflow_headers

        payload = {
            "contact_id": lead.contact_id,
            "first_name": lead.first_name,
            "location": {"id": self.location_id, "name": "Demo Realty"},
            "workflow": {"id": str(uuid.uuid4()), "name": "Virtual tour watched"},
            "customData": {"signal": signal_name, "occurred_at": now_iso()},
        }
        body = json.dumps(payload).encode()
        return self._post(lead, "/webhooks/workflow", body, workflow_headers(self.keys.workflow_token), signal_name)

    def _post(self, lead: Lead, path: str, body: bytes, headers: dict[str, str], what: str) -> str:
        lead.sent_at.append(time.time())
        reply = self.http.post(path, content=body, headers=headers)
        status = (
            reply.json().get("status", reply.text) if reply.status_code == 200 else f"{reply.status_code} {reply.text}"
        )
        lead.replies.append(f"{what}: {status}")
        if reply.status_code != 200:
            raise RuntimeError(f"POST {path} ({what}) for {lead.contact_id}: {reply.status_code} {reply.text}")
        return str(status)

    # ------------------------------------------------------------------ the HTTP API out
    def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        reply = self.http.request(
            method,
            path,
            params={"location_id": self.location_id},
            headers={"authorization": f"Bearer {self.token}"},
            json=body,
        )
        return reply.status_code, reply.json()


def scenario(demo: Demo, leads: dict[str, Lead]) -> None:
    zone, console = demo.zone, demo.console
    seller, buyer, stopper, cold = leads["seller"], leads["buyer"], leads["stopper"], leads["cold"]
    contact = {"timezone": zone, "country": "US", "dnd": False}

    console.print(f"[bold]1. {seller.name}[/bold], {seller.story}")
    demo.ghl(seller, "ContactCreate", firstName="Maria", lastName="Lopez", phone="+16175550142",
             email="maria@example.com", source="Home Value Form", **contact)  # fmt: skip
    for page in ("/sell/what-is-my-home-worth", "/sell/estimate", "/sell/estimate?beds=3"):
        demo.activity(seller, "pricing_tool_usage", page=page)
    for area in ("Jamaica Plain", "Roslindale"):
        demo.activity(seller, "neighborhood_research", neighborhood=area)
    demo.activity(seller, "market_report_engagement", report="Q4 Boston market")
    demo.activity(seller, "market_report_engagement", report="Sold prices near you")
    console.print("   " + ", ".join(seller.replies[-3:]))

    console.print(f"[bold]2. {buyer.name}[/bold], {buyer.story}")
    demo.ghl(buyer, "ContactCreate", firstName="Jordan", lastName="Kim", phone="+16175550177",
             email="jordan@example.com", source="Listing Inquiry Form", **contact)  # fmt: skip
    for query in ("3 bed Somerville", "condo Cambridge", "3 bed Medford", "townhouse Arlington"):
        demo.activity(buyer, "property_search", query=query)
    for listing in range(5):
        demo.activity(buyer, "listing_view", listing=f"MLS-7310{listing}")
    demo.workflow(buyer, "virtual_tour_view")
    console.print("   " + ", ".join(buyer.replies[-2:]))

    console.print(f"[bold]3. {stopper.name}[/bold], {stopper.story}")
    demo.ghl(stopper, "ContactCreate", firstName="Sam", lastName="Ortiz", phone="+16175550199",
             email="sam@example.com", source="Open House Sign-in", **contact)  # fmt: skip
    demo.activity(stopper, "pricing_tool_usage", page="/sell/what-is-my-home-worth")
    demo.ghl(stopper, "InboundMessage", messageType="SMS", body="STOP", direction="inbound")
    demo.activity(stopper, "pricing_tool_usage", page="/sell/estimate")
    demo.activity(stopper, "neighborhood_research", neighborhood="Dorchester")
    demo.activity(stopper, "market_report_engagement", report="Q4 Boston market")
    console.print("   " + ", ".join(stopper.replies[-4:]))

    console.print(f"[bold]4. {cold.name}[/bold], {cold.story}")
    demo.ghl(cold, "ContactCreate", firstName="Casey", lastName="Nguyen", phone="+16175550123",
             email="casey@example.com", source="Facebook Ad", **contact)  # fmt: skip
    demo.activity(cold, "website_visit", page="/")
    console.print("   " + ", ".join(cold.replies[-2:]))


def settle(demo: Demo, since: float) -> dict[str, Any]:
    """Wait for two monitor runs after the last webhook and for every queued job to end."""
    deadline = time.monotonic() + SETTLE_SECONDS
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        _, stats = demo.api("GET", "/followups/stats")
        if time.time() - since >= 2 * INTERVAL + 0.5 and stats.get("pending") == 0 and stats.get("total_tasks"):
            break
        time.sleep(0.25)
    return stats


def summary(demo: Demo, leads: dict[str, Lead], stats: dict[str, Any], blocked: tuple[int, Any]) -> None:
    from rich.panel import Panel
    from rich.table import Table

    console = demo.console
    scores = {key: demo.api("GET", f"/leads/{lead.contact_id}/score")[1] for key, lead in leads.items()}
    histories = {
        key: demo.api("GET", f"/leads/{lead.contact_id}/messages")[1]["messages"] for key, lead in leads.items()
    }
    colors = {"urgent": "bold red", "hot": "red", "warm": "yellow", "cold": "blue"}

    table = Table(title=f"Leads by intent (location {demo.location_id}, leads in {demo.zone})", title_justify="left")
    for column in ("lead", "intent", "likelihood", "top signals (events)", "contact window (local)", "channel"):
        table.add_column(column)
    order = sorted(leads, key=lambda k: -float(scores[k].get("likelihood_score", 0)))
    for key in order:
        score, lead = scores[key], leads[key]
        level = score.get("intent_level", "?")
        signals = ", ".join(f"{s['type']} x{s['frequency']}" for s in score.get("key_signals", [])[:3])
        window = score.get("optimal_contact_window") or ["?", "?"]
        table.add_row(
            lead.name,
            f"[{colors.get(level, 'white')}]{level}[/]",
            f"{score.get('likelihood_score')}",
            signals,
            f"{window[0]}:00-{window[1]}:00",
            str(score.get("recommended_channel")),
        )
    console.print(table)

    sent = Table(title="Follow-ups (dry-run: recorded to the outbox, nothing left this machine)", title_justify="left")
    for column in ("lead", "how", "after webhook", "channel", "status", "message"):
        sent.add_column(column)
    outbox = _outbox(demo)
    for key in order:
        lead = leads[key]
        for entry in reversed(histories[key]):
            job_id = str(entry.get("job_id", ""))
            source = str(outbox.get(job_id, {}).get("source") or ("on_demand" if job_id.startswith("od-") else "?"))
            how = source.replace("_", " ")
            at = datetime.fromisoformat(str(entry["at"]).replace("Z", "+00:00")).timestamp()
            composer = outbox.get(job_id, {}).get("composer")
            text = str(entry.get("body") or entry.get("reason") or "")
            if composer:
                text += f"\n[dim]written by {composer}[/dim]"
            sent.add_row(
                lead.first_name,
                how,
                _duration(lead.delay(at)),
                str(entry.get("channel")),
                str(entry.get("status")),
                text,
            )
    console.print(sent)

    written = Table(
        title="Written to GHL contacts (dry-run: the outbox). A burst's first event is written at once;\n"
        "where the rest moved the lead further, the first monitor run after that minute writes it",
        title_justify="left",
    )
    for column in ("lead", "tag", "leadflow_score", "leadflow_why"):
        written.add_column(column)
    latest: dict[str, dict[str, Any]] = {}
    for entry in outbox.values():  # newest first
        if entry.get("kind") == "sync":
            latest.setdefault(str(entry.get("lead_id")), entry)
    for key in order:
        entry = latest.get(leads[key].contact_id)
        if entry:
            fields = entry.get("custom_fields", {})
            tag = f"leadflow:{fields.get('leadflow_intent')}"
            written.add_row(leads[key].first_name, tag, str(fields.get("leadflow_score")), fields.get("leadflow_why"))
    if latest:
        console.print(written)

    skipped = Table(title="Skipped, and why", title_justify="left")
    skipped.add_column("lead")
    skipped.add_column("why")
    for key in order:
        lead, score = leads[key], scores[key]
        reasons = [f"{e.get('reason')} (at send time)" for e in histories[key] if e.get("status") == "skipped"]
        if key == "stopper":
            status, body = blocked
            reason = body.get("reason") if isinstance(body, dict) else body
            reasons.append(
                f"replied STOP: opted out; the monitor skips Sam and an on-demand send answers {status} {reason}"
            )
        elif not histories[key] and float(score.get("likelihood_score", 0)) < 50:
            reasons.append(
                f"{score.get('intent_level')}: likelihood {score.get('likelihood_score')} is below MIN_LIKELIHOOD 50"
            )
        if reasons:
            skipped.add_row(lead.first_name, "\n".join(reasons))
    console.print(skipped)

    skipped_stats = stats.get("skipped") or {}
    by_reason = ", ".join(f"{k} {v}" for k, v in skipped_stats.items())
    console.print(
        Panel(
            f"jobs queued {stats.get('total_tasks')}   sent {stats.get('sent')}   "
            f"handed off {stats.get('handed_off', 0)}   "
            f"skipped {stats.get('skipped_total', 0)}{f' ({by_reason})' if by_reason else ''}   "
            f"failed {stats.get('failed')}   "
            f"pending {stats.get('pending')}   dead-letter queue {stats.get('dlq_depth')}   "
            f"mode {stats.get('send_mode')}   monitoring {'on' if stats.get('is_running') else 'off'}",
            title="GET /followups/stats",
            expand=False,
        )
    )


def _duration(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.1f} s"


def _outbox(demo: Demo) -> dict[str, dict[str, Any]]:
    """The dry-run outbox by job id (which composer wrote each message), read from the stack's Redis."""
    try:
        import redis

        from leadflow.followup_store import outbox_key

        _, health = demo.api("GET", "/_local/health")
        client = redis.Redis.from_url(health["redis_url"], decode_responses=True, socket_timeout=2)
        entries = client.lrange(outbox_key(demo.location_id), 0, -1)
        return {e["job_id"]: e for e in (json.loads(item) for item in entries)}
    except Exception:  # the summary does without the composer column
        return {}


def marketplace(location_id: str) -> GhlStandIn:
    """A GHL stand-in on this machine, and the stack set up as its marketplace app (messages stay
    dry-run: the outbox). The stand-in holds one authorization code for the demo's location."""
    import os

    ghl = GhlStandIn(location_id)
    ghl.add_code(INSTALL_CODE)
    os.environ.update(
        {
            "GHL_CLIENT_ID": CLIENT_ID,
            "GHL_CLIENT_SECRET": CLIENT_SECRET,
            "GHL_API_BASE_URL": ghl.url,
            "SEND_MODE": "dry-run",
        }
    )
    return ghl


def install(base: str, location_id: str, console: Any) -> None:
    """What a user's browser does after installing the app in GHL: follow the redirect to the callback."""
    import httpx

    reply = httpx.get(f"{base}/oauth/callback", params={"code": INSTALL_CODE}, timeout=30)
    title = reply.text.split("<h1>", 1)[-1].split("</h1>", 1)[0] if "<h1>" in reply.text else reply.text[:80]
    if reply.status_code != 200:
        raise RuntimeError(f"GET /oauth/callback: {reply.status_code} {title}")
    console.print(
        f'[bold]0. The GHL app is installed[/bold]: GET /oauth/callback?code=... answers {reply.status_code} "{title}"'
    )
    console.print("   (GHL's stand-in issued the location's tokens; they are kept in the installations table)\n")


def main() -> int:
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # CI logs: wide enough for the tables
    started = time.monotonic()
    keys = ensure(STATE_DIR)
    log_path = STATE_DIR / "demo.log"
    console.rule("[bold]leadflow demo[/bold]: template.yaml on this machine")
    console.print(f"starting the local stack (its log: {log_path.relative_to(ROOT)}) ...")
    location_id = f"demo-{uuid.uuid4().hex[:6]}"
    ghl = marketplace(location_id)
    try:
        stack = launch(INTERVAL, log_path)
    except StackFailed as exc:
        console.print(f"[red]demo failed:[/red] {exc}")
        ghl.close()
        return 1
    try:
        console.print(
            f"ready on {stack.base} in {time.monotonic() - started:.1f} s; the monitor runs every {INTERVAL} s\n"
        )
        install(stack.base, location_id, console)
        zone = daytime_zone()
        demo = Demo(stack.base, keys, location_id, zone, console)
        leads = {
            "seller": Lead("seller-maria", "Maria (seller)", "researching her home's value", "Maria"),
            "buyer": Lead("buyer-jordan", "Jordan (buyer)", "searching listings", "Jordan"),
            "stopper": Lead("stop-sam", "Sam (replies STOP)", "replies STOP to a text, then keeps browsing", "Sam"),
            "cold": Lead("cold-casey", "Casey (cold)", "one website visit", "Casey"),
        }
        scenario(demo, leads)
        last = max(lead.last_event_at for lead in leads.values())
        console.print(f"\nwaiting for the monitor and the send function (every {INTERVAL} s) ...\n")
        stats = settle(demo, last)
        blocked = demo.api("POST", f"/leads/{leads['stopper'].contact_id}/messages", {"channel": "sms"})
        summary(demo, leads, stats, blocked)
    except Exception as exc:
        console.print(f"[red]demo failed:[/red] {exc}  (the stack's log: {log_path})")
        return 1
    finally:
        stack.stop()
        ghl.close()
    console.print(
        f"done in {time.monotonic() - started:.1f} s; everything it started is stopped. "
        "Next: `make dev` to serve the stack, `make token` for the API, `leadflow --help`."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
