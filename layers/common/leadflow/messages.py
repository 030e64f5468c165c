"""Message templates keyed by the dominant signal: the recommended message, and the fallback
whenever Claude cannot write one."""

from __future__ import annotations

OPT_OUT_LINE = "Reply STOP to opt out."

_TEMPLATES: dict[str | None, str] = {
    "pricing_tool_usage": (
        "I noticed you've been researching property values in your area. I'd love to provide you "
        "with a complimentary market analysis - would that be helpful?"
    ),
    "agent_inquiry": "Thanks for reaching out! When is a good time for a quick call about what you're looking for?",
    "neighborhood_research": (
        "Exploring neighborhoods? I can share what homes like yours are selling for nearby - want a quick rundown?"
    ),
    "market_report_engagement": (
        "Glad the market report was useful. Want me to send you the numbers for your street specifically?"
    ),
    "property_search": "I saw you are searching for homes. Want new listings that match, before they hit the sites?",
    "listing_view": "That listing you looked at is getting attention. Would you like to see it in person this week?",
    "email_open": "Thanks for reading my last note. Is there anything about the market I can answer for you?",
    "website_visit": "Thanks for visiting! Anything specific I can help you find?",
    "sms_response": "Thanks for getting back to me! What would be most helpful for you right now?",
    "virtual_tour_view": "Hope you enjoyed the virtual tour! Would you like to schedule a private showing?",
    None: "Just checking in - is there anything I can help you with on your home search or sale?",
}


def template_message(dominant_signal: str | None, first_name: str | None = None) -> str:
    body = _TEMPLATES.get(dominant_signal, _TEMPLATES[None])
    return f"Hi {first_name}! {body}" if first_name else body
