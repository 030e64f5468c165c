"""HTTP concerns shared by the API functions: one mapping from domain errors to replies."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError

from leadflow.errors import GuardrailBlocked, LeadflowError
from leadflow.observability import logger


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
