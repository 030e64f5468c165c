"""Score function: on-demand scoring over the HTTP API (JWT-authorized by API Gateway)."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.openapi.params import Body, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, Field

from leadflow import leads
from leadflow.config import settings
from leadflow.http import install_error_handlers
from leadflow.observability import logger, metrics, tracer

app = APIGatewayHttpResolver(enable_validation=True)
install_error_handlers(app)

LocationQuery = Annotated[str | None, Query(description="GHL location; default GHL_LOCATION_ID")]


class ScoreRequest(BaseModel):
    activity_data: dict[str, Any] | None = Field(
        None, description="The seed's activity_data: score it as given and store nothing"
    )


@app.post("/leads/<lead_id>/score", summary="Score a lead: given activity, or the stored activity now")
def score(
    lead_id: str, body: Annotated[ScoreRequest | None, Body()] = None, location_id: LocationQuery = None
) -> dict[str, Any]:
    if body is not None and body.activity_data is not None:
        return leads.score_activity(lead_id, body.activity_data).to_json()
    return leads.score_stored(lead_id, settings().location(location_id)).to_json()


@app.get("/leads/<lead_id>/score", summary="The score of a stored lead now")
def read_score(lead_id: str, location_id: LocationQuery = None) -> dict[str, Any]:
    return leads.score_stored(lead_id, settings().location(location_id)).to_json()


@app.get("/leads/high-intent", summary="Leads at or above a likelihood, highest first")
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
