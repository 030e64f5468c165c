"""Composing a follow-up: Claude writes it from what the lead did; the template for the dominant
signal stands in whenever there is no key or Claude fails. `anthropic` is imported on first use:
it costs over a second to import and most invocations never write a message.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit

from leadflow.config import settings
from leadflow.messages import OPT_OUT_LINE, template_message
from leadflow.observability import count, logger

SMS_SEGMENT = 160  # one GSM-7 segment
CLAUDE_TIMEOUT = 8.0
CLAUDE_ATTEMPTS = 2  # one retry
MAX_TOKENS = 300

SYSTEM_PROMPT = """You write short follow-up messages for a real-estate agent to a lead who has been \
active on the agent's website. Rules:
- Use only the facts given: the lead's first name (if any), what the lead did, and the channel.
- Never invent facts: no prices, addresses, listings, statistics, dates, names or promises.
- Warm, plain, human; no emojis, no hashtags, no links, no placeholders like [Name].
- End with one easy question the lead can answer.
- For sms: at most 120 characters, one or two sentences, no greeting line, no signature.
- For email: first line "Subject: <subject, at most 60 characters>", then a blank line, then 2-4 short \
sentences of plain text.
Reply with the message only."""

SIGNAL_WORDS = {
    "pricing_tool_usage": "used the home value / pricing tool",
    "agent_inquiry": "asked to talk to an agent",
    "neighborhood_research": "researched neighborhoods",
    "market_report_engagement": "read the market report",
    "property_search": "searched for properties",
    "listing_view": "viewed listings",
    "email_open": "opened recent emails",
    "website_visit": "visited the website",
    "sms_response": "replied to a text",
    "virtual_tour_view": "watched a virtual tour",
}


@dataclass(frozen=True, slots=True)
class Composed:
    body: str
    subject: str | None
    source: str  # "claude" | "template" | "given"


def fit_sms(text: str) -> str:
    """One SMS segment with the opt-out line: cut at a sentence or word boundary if needed."""
    text = " ".join(text.split())
    room = SMS_SEGMENT - len(OPT_OUT_LINE) - 1
    if len(text) > room:
        cut = text[:room]
        sentence = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
        text = cut[: sentence + 1] if sentence > room // 2 else cut[: cut.rfind(" ")].rstrip(",;:-") + "..."
    return f"{text} {OPT_OUT_LINE}"


def _email(text: str, first_name: str | None) -> tuple[str, str]:
    match = re.match(r"\s*Subject:\s*(.+?)\s*\n+(.*)", text, re.DOTALL)
    if match:
        return match[1][:80], match[2].strip()
    return (f"A quick note for you, {first_name}" if first_name else "A quick note"), text.strip()


def _template(signal: str | None, first_name: str | None, channel: str) -> Composed:
    text = template_message(signal, first_name)
    if channel == "sms":
        return Composed(fit_sms(text), None, "template")
    subject, body = _email(text, first_name)
    return Composed(body, subject, "template")


@functools.cache
def _claude(api_key: str) -> Any:
    import anthropic

    return anthropic.Anthropic(api_key=api_key, timeout=CLAUDE_TIMEOUT, max_retries=CLAUDE_ATTEMPTS - 1)


def _ask_claude(api_key: str, first_name: str | None, signals: list[str], intent: str, channel: str) -> str:
    did = "; ".join(SIGNAL_WORDS.get(s, s.replace("_", " ")) for s in signals) or "visited the website"
    facts = (
        f"Channel: {channel}\nLead's first name: {first_name or 'unknown'}\nIntent: {intent}\nRecently the lead: {did}"
    )
    reply = _claude(api_key).messages.create(
        model=settings().anthropic_model,
        max_tokens=MAX_TOKENS,
        # The system prompt is the same for every message: marked for caching, which the API applies
        # once a prompt is long enough to pay for it.
        system=[{"type": "text", "text": SYSTEM_PROMPT, "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": facts}],
    )
    text = "".join(block.text for block in reply.content if getattr(block, "type", "") == "text").strip()
    if not text:
        raise ValueError("empty reply")
    return text


def compose(
    channel: str, signals: list[str], intent: str, first_name: str | None, given: str | None = None
) -> Composed:
    """The message for a lead: the given text, else Claude's, else the template."""
    if given:
        if channel == "sms":
            return Composed(fit_sms(given), None, "given")
        subject, body = _email(given, first_name)
        return Composed(body, subject, "given")
    dominant = signals[0] if signals else None
    api_key = settings().anthropic_key()
    if not api_key:
        return _template(dominant, first_name, channel)
    started = time.perf_counter()
    try:
        text = _ask_claude(api_key, first_name, signals, intent, channel)
    except Exception as exc:
        logger.warning("claude failed, using the template", extra={"error": type(exc).__name__})
        count("ClaudeFallbacks", reason=type(exc).__name__)
        return _template(dominant, first_name, channel)
    finally:
        count("ClaudeLatency", (time.perf_counter() - started) * 1000, unit=MetricUnit.Milliseconds)
    if channel == "sms":
        return Composed(fit_sms(text), None, "claude")
    subject, body = _email(text, first_name)
    return Composed(body, subject, "claude")
