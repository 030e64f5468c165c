"""Agent handoff: which leads are handed to their agent as a GHL task, under which rules, and what
the task says. Pure functions; `handoff_send` creates the task.

Who: an urgent lead whose recommended channel is `call` (the monitor and the fast path give it a
`call` job, never an automated text), and a hot or urgent lead whose event is a reply or a request
for an agent (`sms_response`, `agent_inquiry`: the fast path, instead of an automated message).

The rules. A task goes to the team's agent, not to the lead, but it asks the agent to call the lead:
- Opted out of calls (GHL's DND on every channel or on Call, or a STOP-family reply): no task. The
  lead refused contact, and "Call Maria" invites the very call refused; the agent still sees the
  conversation in GHL.
- Paused for good (an appointment booked, the opportunity won or lost): no task, the lead is in an
  agent's hands already. A stop-on-reply pause does not hold it back: a reply is exactly when an
  agent should take over.
- Quiet hours do not hold it back, they move it: the task is due at the next time inside the lead's
  sending hours (SENDING_HOURS; Florida's 8-20) instead of in 15 minutes, so the agent is told now
  and not asked to call at 11 pm.
- The daily message cap and Florida's 24-hour limit count messages to the lead; a task is not one.
  A task has its own limit: one per lead per local day.
- Spilled events waiting for replay hold it back, as they hold messages (a STOP may be among them).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from leadflow import guardrails
from leadflow.config import Settings
from leadflow.lead import PAUSED_FOR_GOOD, LeadState
from leadflow.scoring import PredictiveSellScore
from leadflow.signals import INTENT_THRESHOLDS, Signal
from leadflow.writeback import LABELS, why

CHANNEL = "call"
DUE_MINUTES = 15
ASKS_FOR_AGENT = frozenset({Signal.AGENT_INQUIRY, Signal.SMS_RESPONSE})
HOT = min(threshold for threshold, level in INTENT_THRESHOLDS if level == "hot")
HANDED_OFF_TODAY = "handed_off_today"


def asks_for_agent(likelihood: float, signal: Signal | None) -> bool:
    """A hot or urgent lead who just replied or asked for an agent."""
    return signal in ASKS_FOR_AGENT and likelihood >= HOT


def blocked(state: LeadState | None) -> str | None:
    """Why this lead's agent gets no task now, or None (see the module's rules)."""
    if state is None:
        return "unknown_lead"
    if state.profile.opted_out_of(CHANNEL):
        return guardrails.OPTED_OUT
    if state.paused_until == PAUSED_FOR_GOOD:
        return guardrails.PAUSED
    return None


def job_id(location_id: str, contact_id: str, score: PredictiveSellScore, now: datetime) -> str:
    """One handoff job per lead and local day: the monitor and the fast path share it."""
    local = now.astimezone(ZoneInfo(score.timezone))
    return f"{location_id}:{contact_id}:{local.date().isoformat()}:{CHANNEL}"


def due_date(state: LeadState, now: datetime, config: Settings) -> datetime:
    """In DUE_MINUTES, or at the next full hour inside the lead's sending hours on all its clocks."""
    due = now + timedelta(minutes=DUE_MINUTES)
    candidate = due
    for _ in range(48):
        if guardrails.in_hours(guardrails.limits(state, candidate, config)):
            return candidate
        candidate = candidate.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return due


def task(state: LeadState, score: PredictiveSellScore, now: datetime, config: Settings) -> dict[str, Any]:
    """The body of `POST /contacts/{id}/tasks`: title, body (why), dueDate, completed, assignedTo."""
    profile = state.profile
    name = profile.first_name or "the lead"
    verb = "Call" if profile.has_phone else "Email"
    due = due_date(state, now, config).astimezone(UTC)
    lines = [f"leadflow: {score.intent_level}, likelihood {score.likelihood_score}."]
    if score.key_signals:
        lines.append(f"Why: {why(score)}.")
    last = _last_activity(state, now)
    if last:
        lines.append(f"Last activity: {last}.")
    body: dict[str, Any] = {
        "title": f"{verb} {name}: {score.intent_level}, {score.likelihood_score}",
        "body": "\n".join(lines),
        "dueDate": due.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "completed": False,
    }
    if profile.assigned_to:
        body["assignedTo"] = profile.assigned_to
    return body


def _last_activity(state: LeadState, now: datetime) -> str | None:
    active = [(s.last, signal) for signal, s in state.signals.items() if s.count]
    if not active:
        return None
    newest, signal = max(active)
    minutes = max(0, int((now.timestamp() - newest) // 60))
    ago = f"{minutes} min ago" if minutes < 120 else f"{minutes // 60} h ago"
    return f"{LABELS.get(signal.value, signal.value)}, {ago}"
