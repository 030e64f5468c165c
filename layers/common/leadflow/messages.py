"""Message templates keyed by the dominant signal: the recommended message, and the fallback
whenever Claude cannot write one."""

from __future__ import annotations

OPT_OUT_LINE = "Reply STOP to opt out."

# Each fits one SMS segment with a greeting and the opt-out line (a test holds them to it).
_TEMPLATES: dict[str | None, str] = {
    "pricing_tool_usage": "I saw you checking home values in your area. Would a free market analysis help?",
    "agent_inquiry": "Thanks for reaching out! When is a good time for a quick call?",
    "neighborhood_research": "Exploring neighborhoods? Want a quick rundown of what homes sell for nearby?",
    "market_report_engagement": "Glad the market report helped. Want the numbers for your street?",
    "property_search": "I saw you searching for homes. Want new matches before they hit the big sites?",
    "listing_view": "That listing you viewed is getting attention. Would you like to see it this week?",
    "email_open": "Thanks for reading my last note. Any questions about the market I can answer?",
    "website_visit": "Thanks for visiting! Anything specific I can help you find?",
    "sms_response": "Thanks for getting back to me! What would help you most right now?",
    "virtual_tour_view": "Hope you enjoyed the virtual tour! Would you like a private showing?",
    None: "Just checking in - anything I can help with on your home search or sale?",
}


def template_message(dominant_signal: str | None, first_name: str | None = None) -> str:
    body = _TEMPLATES.get(dominant_signal, _TEMPLATES[None])
    return f"Hi {first_name}! {body}" if first_name else body
