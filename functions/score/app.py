"""Score function: on-demand scoring over the HTTP API (JWT-authorized by API Gateway)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from leadflow import leads
from leadflow.config import settings
from leadflow.http import Resolver, error_responses, install_error_handlers, ok
from leadflow.observability import logger, metrics, tracer
from leadflow.signals import BY_ACTIVITY_KEY, Signal

app = Resolver(enable_validation=True)
install_error_handlers(app)

LocationQuery = Annotated[str | None, Query(description="GHL location; default GHL_LOCATION_ID")]
IntentLevel = Literal["cold", "warm", "hot", "urgent"]


# Documented, not enforced by the model: items are checked by leadflow.activity, whose 422 names the
# field (activity_data.<key>[i].timestamp), and unknown keys are ignored.
def _event_list(key: str) -> dict[str, Any]:
    fields: dict[str, Any] = {"timestamp": {"type": "string", "format": "date-time"}}
    if key == "email_interactions":
        fields["opened"] = {"description": "false: an email sent, not opened (not counted)"}
    return {"type": "array", "items": {"type": "object", "properties": fields, "required": ["timestamp"]}}


ACTIVITY_DATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The seed's activity_data: lists of {timestamp (ISO 8601; no zone is UTC), ...} by key",
    "properties": {key: _event_list(key) for key in BY_ACTIVITY_KEY},
}


class ScoreRequest(BaseModel):
    activity_data: dict[str, Any] | None = Field(
        None,
        description="The seed's activity_data: score it as given and store nothing",
        json_schema_extra={"anyOf": [ACTIVITY_DATA_SCHEMA, {"type": "null"}]},
    )


class KeySignal(BaseModel):
    type: Signal
    frequency: int = Field(ge=0, description="Events of this signal on record")
    recency_hours: float = Field(ge=0, description="Hours since the last one")
    trend: Literal["increasing", "stable", "decreasing"]
    points: float = Field(ge=0, le=100, description="Its share of the likelihood")


class PredictiveSellScore(BaseModel):
    lead_id: str
    likelihood_score: float = Field(ge=0, le=100)
    intent_level: IntentLevel
    optimal_contact_window: list[int] = Field(
        min_length=2, max_length=2, description="[start_hour, end_hour] in the lead's local time"
    )
    recommended_channel: Literal["sms", "email", "call"]
    recommended_message: str
    confidence: float = Field(ge=0, le=1)
    key_signals: list[KeySignal] = Field(description="Largest contribution first")
    timezone: str
    scored_at: str = Field(description="ISO 8601 UTC", json_schema_extra={"format": "date-time"})


class HighIntentLead(BaseModel):
    lead_id: str
    likelihood_score: float = Field(ge=0, le=100)
    intent_level: IntentLevel


class HighIntentList(BaseModel):
    lead_ids: list[str]
    leads: list[HighIntentLead] = Field(description="Highest likelihood first")


@app.post(
    "/leads/<lead_id>/score",
    summary="Score a lead: given activity, or the stored activity now",
    responses={200: ok(PredictiveSellScore, "The lead's score"), **error_responses(400, 404)},
)
def score(
    lead_id: str, body: Annotated[ScoreRequest | None, Body()] = None, location_id: LocationQuery = None
) -> dict[str, Any]:
    if body is not None and body.activity_data is not None:
        return leads.score_activity(lead_id, body.activity_data).to_json()
    return leads.score_stored(lead_id, settings().location(location_id)).to_json()


@app.get(
    "/leads/<lead_id>/score",
    summary="The score of a stored lead now",
    responses={200: ok(PredictiveSellScore, "The lead's score"), **error_responses(404)},
)
def read_score(lead_id: str, location_id: LocationQuery = None) -> dict[str, Any]:
    return leads.score_stored(lead_id, settings().location(location_id)).to_json()


@app.get(
    "/leads/high-intent",
    summary="Leads at or above a likelihood, highest first",
    responses={200: ok(HighIntentList, "The leads, highest first"), **error_responses()},
)
def high_intent(
    min_likelihood: Annotated[float, Query(ge=0, le=100)] = 50.0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    location_id: LocationQuery = None,
) -> dict[str, Any]:
    found = leads.high_intent(settings().location(location_id), min_likelihood, limit)
    return {"lead_ids": [lead.lead_id for lead in found], "leads": [lead.to_json() for lead in found]}


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
