"""Composing messages: SMS fits one segment with the opt-out line; emails have a subject."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from leadflow.compose import SMS_SEGMENT, compose, fit_sms
from leadflow.messages import _TEMPLATES, OPT_OUT_LINE
from leadflow.signals import Signal
from tests.helpers import ROOT


@pytest.mark.parametrize("signal", [*list(Signal), None])
def test_every_template_fits_one_sms_segment_with_a_greeting(signal: Signal | None) -> None:
    composed = compose("sms", [signal] if signal else [], "hot", "Maximiliana")
    assert len(composed.body) <= SMS_SEGMENT
    assert composed.body == f"Hi Maximiliana! {_TEMPLATES[signal]} {OPT_OUT_LINE}"


@given(st.text(min_size=1, max_size=600))
def test_fit_sms_always_ends_with_the_opt_out_line_within_one_segment(text: str) -> None:
    fitted = fit_sms(text)
    assert fitted.endswith(OPT_OUT_LINE)
    assert len(fitted) <= SMS_SEGMENT


def test_a_long_message_is_cut_at_a_sentence() -> None:
    first = "I saw you checking home values in your area and wanted to reach out with something useful."
    text = f"{first} Would you like a free market analysis of your home and your street this week or next?"
    assert fit_sms(text) == f"{first} {OPT_OUT_LINE}"


def test_a_long_sentence_is_cut_at_a_word() -> None:
    fitted = fit_sms("word " * 60)
    assert fitted.endswith(f"word... {OPT_OUT_LINE}")


def test_an_email_takes_its_subject_from_the_first_line() -> None:
    composed = compose("email", [], "hot", "Ana", given="Subject: Your home value\n\nHi Ana,\n\nWant an estimate?")
    assert composed.subject == "Your home value"
    assert composed.body == "Hi Ana,\n\nWant an estimate?"


def test_an_email_without_a_subject_line_gets_one() -> None:
    composed = compose("email", ["pricing_tool_usage"], "hot", "Ana")
    assert composed.subject == "A quick note for you, Ana"
    assert "home values" in composed.body


def test_importing_the_handlers_does_not_import_anthropic() -> None:
    code = (
        "import sys; sys.path[:0] = ['layers/common', '.'];"
        "from tests.helpers import load_app;"
        "[load_app(name) for name in ('score', 'monitor', 'send')];"
        "print('anthropic' in sys.modules)"
    )
    env = {"PATH": "/usr/bin:/bin", "AWS_DEFAULT_REGION": "us-east-1", "REDIS_URL": "redis://127.0.0.1:1/0"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
