"""What the score routes do: score given activity, score a stored lead now, list high-intent leads."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from leadflow.activity import state_from_activity
from leadflow.config import settings
from leadflow.errors import LeadNotFound
from leadflow.lead_state import LeadStore
from leadflow.scoring import PredictiveSellScore, intent_level, score_lead


@dataclass(frozen=True, slots=True)
class HighIntentLead:
    lead_id: str
    likelihood_score: float

    def to_json(self) -> dict[str, Any]:
        return {
            "lead_id": self.lead_id,
            "likelihood_score": self.likelihood_score,
            "intent_level": intent_level(self.likelihood_score),
        }


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def score_activity(lead_id: str, activity_data: Any, now: datetime | None = None) -> PredictiveSellScore:
    """The seed's analyze_lead_behavior: score the activity as given, store nothing."""
    config = settings()
    at = _now(now)
    state = state_from_activity(activity_data, at.timestamp())
    return score_lead(lead_id, state, at, config.sending_hours, config.default_timezone)


def score_stored(
    lead_id: str, location_id: str, store: LeadStore | None = None, now: datetime | None = None
) -> PredictiveSellScore:
    config = settings()
    state = (store or LeadStore()).load(location_id, lead_id)
    if state is None:
        raise LeadNotFound(lead_id)
    return score_lead(lead_id, state, _now(now), config.sending_hours, config.default_timezone)


def high_intent(
    location_id: str, min_likelihood: float, limit: int, store: LeadStore | None = None, now: datetime | None = None
) -> list[HighIntentLead]:
    found = (store or LeadStore()).high_intent(location_id, min_likelihood, limit, _now(now).timestamp())
    return [HighIntentLead(cid, score) for cid, _, score in found]
