"""Fixtures of the send function's tests: the handler, and local stand-ins for GHL and Claude."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from leadflow.config import settings
from tests.conftest import Queues
from tests.helpers import StubServer, claude_reply, load_app


@pytest.fixture
def send(redis_url: str, queues: Queues) -> Any:
    return load_app("send")


@pytest.fixture
def ghl(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    server = StubServer({"POST /conversations/messages": [(200, {}, {"messageId": "m-1", "conversationId": "c-1"})]})
    monkeypatch.setenv("GHL_API_KEY", "pit-test-token")
    monkeypatch.setenv("GHL_API_BASE_URL", server.url)
    monkeypatch.setenv("SEND_MODE", "live")
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    settings.cache_clear()
    yield server
    server.close()


@pytest.fixture
def anthropic_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubServer]:
    server = StubServer({"POST /v1/messages": [claude_reply("Saw you checking home values - want a quick estimate?")]})
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    settings.cache_clear()
    yield server
    server.close()
