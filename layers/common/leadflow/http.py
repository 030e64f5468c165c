"""HTTP concerns shared by the API functions: one mapping from domain errors to replies, the
resolver, and the error replies' place in the OpenAPI document."""

from __future__ import annotations

import re
from typing import Any, Literal

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel

from leadflow.errors import GuardrailBlocked, LeadflowError
from leadflow.observability import logger

_PARAMETER = re.compile(r"<(\w+)>")


class Resolver(APIGatewayHttpResolver):
    """An HTTP API resolver whose `<param>` matches any one path segment, as API Gateway's `{param}`
    does: Powertools' own pattern leaves out characters such as a backtick, a backslash or a control
    character, and a lead id holding one would answer 404 "no such route" instead of reaching the route."""

    @staticmethod
    def _compile_regex(rule: str, base_regex: str = "^{}$") -> re.Pattern[str]:
        return re.compile(base_regex.format(_PARAMETER.sub(r"(?P<\1>[^/]+)", rule)))


class ErrorReply(BaseModel):
    """Every error: JSON with a message (never a stack trace)."""

    message: str


class BlockedReply(ErrorReply):
    """409: a guardrail forbids the send now; where several apply, the first in this order."""

    reason: Literal["not_installed", "opted_out", "paused", "daily_cap", "quiet_hours", "rate_limited"]


ERROR_DESCRIPTIONS = {
    400: "The body is not valid JSON",
    404: "Unknown lead",
    409: "A guardrail forbids the send now",
    422: "A parameter or body field is invalid; the message names it",
    503: "Redis or the follow-up queue is unavailable; retry shortly",
}


def error_responses(*statuses: int) -> dict[int, OpenAPIResponse]:
    """The OpenAPI responses of a route's possible errors (422 and 503 come with every route)."""
    responses: dict[int, OpenAPIResponse] = {}
    for status in sorted({*statuses, 422, 503}):
        model = BlockedReply if status == 409 else ErrorReply
        responses[status] = {
            "description": ERROR_DESCRIPTIONS[status],
            "content": {content_types.APPLICATION_JSON: {"model": model}},
        }
    return responses


def ok(model: type[BaseModel], description: str) -> OpenAPIResponse:
    return {"description": description, "content": {content_types.APPLICATION_JSON: {"model": model}}}


def error(status: int, message: str, **extra: Any) -> Response:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body={"message": message, **extra})


def _field(loc: tuple[Any, ...]) -> str:
    """('query', 'limit') -> 'limit'; ('body', 'activity_data', 'x') -> 'activity_data.x'."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_error_handlers(app: APIGatewayHttpResolver) -> None:
    @app.exception_handler(RequestValidationError)
    def _invalid(exc: RequestValidationError) -> Response:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        message = f"{_field(tuple(first.get('loc', ())))}: {first.get('msg', 'invalid')}"
        if first.get("type") == "json_invalid":
            return error(400, "body is not valid JSON")
        return error(422, message)

    @app.exception_handler(UnicodeDecodeError)
    def _undecodable(exc: UnicodeDecodeError) -> Response:
        # A base64 body (API Gateway's encoding of bytes) that is not UTF-8 cannot be JSON: the
        # client's error. Any other decoding failure is ours, and stays a 500.
        try:
            app.current_event.decoded_body  # noqa: B018 - the property decodes; it is what may fail
        except UnicodeDecodeError:
            return error(400, "body is not valid JSON (not UTF-8)")
        raise exc

    @app.exception_handler(GuardrailBlocked)
    def _blocked(exc: GuardrailBlocked) -> Response:
        return error(409, exc.message, reason=exc.reason)

    @app.exception_handler(LeadflowError)
    def _domain(exc: LeadflowError) -> Response:
        if exc.status >= 500:
            logger.warning("dependency unavailable", extra={"error": exc.message})
            return error(503, "service temporarily unavailable, retry shortly")
        return error(exc.status, exc.message)

    @app.not_found
    def _not_found(_: Exception) -> Response:
        return error(404, "no such route")
