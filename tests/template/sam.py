"""The template, read and transformed offline, its roles' permissions, and the handlers' routes, for the
template tests."""

from __future__ import annotations

import copy
import json
import re
from fnmatch import fnmatchcase
from typing import Any

import boto3
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from tests.helpers import ROOT

TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
FUNCTIONS = ("webhook", "score", "monitor", "send")
LOGICAL_ID = {name: f"{name.capitalize()}Function" for name in FUNCTIONS}

# Values for the parameters without a default; the transform needs no others.
REQUIRED_PARAMETERS: dict[str, Any] = {
    "VpcId": "vpc-0123456789abcdef0",
    "SubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"],
    "JwtIssuer": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_example",
    "JwtAudience": ["leadflow-client"],
}

# The contract's routes (ARCHITECTURE.md, "Contract: HTTP"), by the function that serves them.
CONTRACT_ROUTES: dict[str, set[tuple[str, str]]] = {
    "webhook": {
        ("POST", "/webhooks/ghl"),
        ("POST", "/webhooks/activity"),
        ("POST", "/webhooks/workflow"),
        ("GET", "/oauth/callback"),  # "Contract: GHL both ways": GHL's redirect after an install
    },
    "score": {("POST", "/leads/{lead_id}/score"), ("GET", "/leads/{lead_id}/score"), ("GET", "/leads/high-intent")},
    "monitor": set(),
    "send": {
        ("POST", "/leads/{lead_id}/messages"),
        ("GET", "/leads/{lead_id}/messages"),
        ("GET", "/followups/stats"),
        ("PUT", "/followups/monitoring"),
    },
}

# Powertools resolver decorators: @app.get("/path"), @app.post(rule="/path"), @app.route("/path", method="PUT").
_SHORTHAND = re.compile(r"@\w+\.(get|post|put|patch|delete)\(\s*(?:rule\s*=\s*)?[\"']([^\"']+)[\"']")
_ROUTE = re.compile(r"@\w+\.route\(\s*(?:rule\s*=\s*)?[\"']([^\"']+)[\"']([^)]*)\)")
_METHODS = r"(\[[^\]]*\]|\([^)]*\)|[\"'][A-Za-z]+[\"'])"  # "PUT", ["PUT", "POST"] or ("PUT",)
_METHODS_BY_KEYWORD = re.compile(r"method\s*=\s*" + _METHODS)
_METHODS_BY_POSITION = re.compile(r"^\s*,\s*" + _METHODS)
_METHOD = re.compile(r"[\"']([A-Za-z]+)[\"']")
_WEBHOOK_PATH = re.compile(r"[\"'](/webhooks/[\w-]+)[\"']")
_OAUTH_PATH = re.compile(r"[\"'](/oauth/callback)[\"']")


def load_template() -> dict[str, Any]:
    """template.yaml as written, with short-form intrinsics (!Ref, !Sub, ...) as their long form."""
    template: dict[str, Any] = yaml_parse(TEMPLATE.read_text())
    return template


def transform(sam_template: dict[str, Any]) -> dict[str, Any]:
    """The SAM transform, offline: CodeUri/ContentUri as S3 URIs (as `sam package` leaves them) and an
    empty managed-policy map (the policy templates need no lookups); a region, no credentials."""
    template = copy.deepcopy(sam_template)
    for logical_id, resource in template["Resources"].items():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if key in properties:
                properties[key] = f"s3://leadflow-artifacts/{logical_id}.zip"
    translated: dict[str, Any] = Translator(
        None, Parser(), boto_session=boto3.session.Session(region_name=REGION)
    ).translate(template, parameter_values=dict(REQUIRED_PARAMETERS), get_managed_policy_map=dict)
    return translated


def of_type(resources: dict[str, Any], resource_type: str) -> dict[str, Any]:
    return {name: r for name, r in resources.items() if r["Type"] == resource_type}


def role_of(resources: dict[str, Any], function: str) -> dict[str, Any]:
    """The execution role of a function (a logical id), SAM's generated one or the template's own."""
    name = resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]
    role: dict[str, Any] = resources[name]
    return role


def statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """The statements of a role's inline policies."""
    return [s for policy in role["Properties"].get("Policies", []) for s in policy["PolicyDocument"]["Statement"]]


def actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def resource_names(statement: dict[str, Any]) -> set[str]:
    """The logical ids a statement's Resource names (through Ref, GetAtt or Sub)."""
    return set(re.findall(r'"(?:Ref|Fn::GetAtt)": \[?"(\w+)"', json.dumps(statement["Resource"])))


def allows(statement: dict[str, Any], action: str) -> bool:
    """Whether an Allow statement's actions cover an action, wildcards (sqs:SendMessage*, sqs:*) as IAM reads them."""
    return statement["Effect"] == "Allow" and any(fnmatchcase(action.lower(), a.lower()) for a in actions(statement))


def granted(resources: dict[str, Any], function: str, action: str) -> set[str]:
    """The resources (logical ids) on which a function's (webhook, ...) role's inline policies allow an action."""
    return {
        name
        for statement in statements(role_of(resources, LOGICAL_ID[function]))
        if allows(statement, action)
        for name in resource_names(statement)
    }


def managed_policy_names(role: dict[str, Any]) -> set[str]:
    """The names of a role's AWS managed policies, however the ARN is written (a string, or !Sub with the partition)."""
    arns = json.dumps(role["Properties"].get("ManagedPolicyArns", []))
    return set(re.findall(r":iam::aws:policy/(?:service-role/)?([\w-]+)", arns))


def handler_routes(function: str) -> set[tuple[str, str]]:
    """The (METHOD, /path/{param}) routes declared by decorators in functions/<function>/app.py."""
    source = (ROOT / "functions" / function / "app.py").read_text()
    routes = {(method.upper(), path) for method, path in _SHORTHAND.findall(source)}
    for path, rest in _ROUTE.findall(source):
        match = _METHODS_BY_KEYWORD.search(rest) or _METHODS_BY_POSITION.search(rest)
        found = _METHOD.findall(match[1]) if match else ["GET"]  # route() defaults to GET
        routes |= {(method.upper(), path) for method in found}
    return {(method, to_template_path(path)) for method, path in routes}


def to_template_path(path: str) -> str:
    """Powertools writes a path parameter <lead_id>; API Gateway and the template write {lead_id}."""
    return re.sub(r"<(\w+)>", r"{\1}", path)


def function_url_routes() -> set[tuple[str, str]]:
    """The /webhooks/* paths the webhook's intake code dispatches on (a Function URL has no routes of
    its own: the code matches the path; the contract makes every one a POST)."""
    sources = [ROOT / "functions" / "webhook" / "app.py", *sorted((ROOT / "layers/common/leadflow").rglob("*.py"))]
    texts = [source.read_text() for source in sources]
    posts = {path for text in texts for path in _WEBHOOK_PATH.findall(text)}
    gets = {path for text in texts for path in _OAUTH_PATH.findall(text)}
    return {("POST", path) for path in posts} | {("GET", path) for path in gets}


def served_routes(function: str) -> tuple[set[tuple[str, str]], str]:
    """The routes a function serves, and where they were read: its handler's decorators; for the
    webhook, the /webhooks/* paths its intake code dispatches on; for a handler that declares none yet
    (being written), the contract's routes."""
    routes = handler_routes(function)
    if routes:
        return routes, f"functions/{function}/app.py"
    if function == "webhook" and (routes := function_url_routes()):
        return routes, "the /webhooks/* paths in functions/webhook/app.py and leadflow"
    return CONTRACT_ROUTES[function], "the contract (its app.py declares no routes yet)"


def template_http_api_routes(sam_template: dict[str, Any]) -> dict[str, set[tuple[str, str]]]:
    """The HttpApi events of each function in the SAM template, as (METHOD, path)."""
    routes: dict[str, set[tuple[str, str]]] = {}
    for function, logical_id in LOGICAL_ID.items():
        events = sam_template["Resources"][logical_id]["Properties"].get("Events", {})
        routes[function] = {
            (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
            for event in events.values()
            if event["Type"] == "HttpApi"
        }
    return routes
