"""The marketplace app's installation, seen from the webhook function: GHL's redirect after a user
installs the app (`GET /oauth/callback?code=...`, answered with a small page that says what happened
and what to do next), and GHL's INSTALL / UNINSTALL events."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import TYPE_CHECKING

from leadflow import installations
from leadflow.config import settings
from leadflow.errors import StoreUnavailable
from leadflow.intake.events import AppEvent
from leadflow.observability import count, logger

if TYPE_CHECKING:
    from leadflow.intake.service import Reply

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>leadflow: {title}</title>
<style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.4rem}}</style></head>
<body><h1>{title}</h1><p>{message}</p><p>{next}</p></body></html>
"""


def page(status: int, title: str, message: str, next_step: str) -> Reply:
    from leadflow.intake.service import Reply

    text = PAGE.format(title=html.escape(title), message=html.escape(message), next=html.escape(next_step))
    return Reply(status, text)


def callback(query: Mapping[str, str]) -> Reply:
    """Exchange the authorization code and store the installation; nothing is stored on a refusal."""
    code = query.get("code")
    if not code:
        said = f" GHL said: {query['error'][:80]}." if query.get("error") else ""
        return page(
            400,
            "No authorization code",
            f"This page expects GHL's redirect after installing leadflow, with a code.{said}",
            "Install leadflow again from the GHL Marketplace.",
        )
    try:
        installation = installations.exchange_code(code)
    except installations.InstallRefused as exc:
        logger.warning("GHL refused the authorization code", extra={"reason": str(exc)})
        return page(
            502,
            "GHL refused the installation",
            f"GHL did not accept the authorization code ({exc}). Nothing was stored.",
            "Codes are single-use and short-lived: start the installation again from the GHL Marketplace.",
        )
    except (installations.TokenUnavailable, StoreUnavailable) as exc:
        logger.warning("installation could not be completed", extra={"reason": str(exc)})
        return page(
            502,
            "Installation not completed",
            "GHL or leadflow's storage did not answer in time. Nothing was stored.",
            "Start the installation again from the GHL Marketplace in a minute.",
        )
    where = installation.location_id.removeprefix("company:")
    kind = "agency" if installation.user_type == "Company" else "location"
    return page(
        200,
        f"leadflow is installed for {where}",
        f"leadflow now follows up with the leads of this {kind} ({where}).",
        "Next: subscribe the app's webhooks to POST /webhooks/ghl, and watch the first scores appear "
        "on your contacts (leadflow_score, leadflow_intent, leadflow_why). You can close this page.",
    )


def apply_app_event(app: AppEvent) -> str:
    """UNINSTALL deletes the location's tokens at once (its follow-ups then end `not_installed`);
    INSTALL is noted (the tokens come through the callback). Outside marketplace mode: ignored."""
    if not settings().installations_table:
        return "ignored"
    if app.kind == "UNINSTALL":
        installations.remove(app.location_id, app.company_id)
        count("AppUninstalled")
        return "accepted"
    logger.info("app installed (GHL's event)", extra={"location_id": app.location_id, "company_id": app.company_id})
    count("AppInstallEvents")
    return "accepted"
