"""cfn-lint over template.yaml: the checks CloudFormation's own schemas make, run offline."""

from __future__ import annotations

from cfnlint.api import ManualArgs, lint_file

from tests.template.sam import REGION, TEMPLATE


def test_cfn_lint_finds_no_errors_in_the_template() -> None:
    # Given the template, When cfn-lint checks it against the us-east-1 schemas
    matches = lint_file(TEMPLATE, config=ManualArgs(regions=[REGION]))

    # Then it reports no error (warnings and informational notes are listed for the reader)
    errors = [m for m in matches if m.rule.severity.lower() == "error"]
    assert not errors, "\n".join(str(m) for m in matches)


def test_cfn_lint_reports_a_broken_template_so_its_silence_means_something(tmp_path) -> None:
    # Given the template with a queue whose property has the wrong type
    broken = tmp_path / "template.yaml"
    text = TEMPLATE.read_text()
    assert "VisibilityTimeout: 1080" in text
    broken.write_text(text.replace("VisibilityTimeout: 1080", "VisibilityTimeout: [1080]"))

    # When cfn-lint checks it, Then it reports an error
    matches = lint_file(broken, config=ManualArgs(regions=[REGION]))
    assert any(m.rule.severity.lower() == "error" for m in matches)
