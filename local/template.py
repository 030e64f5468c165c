"""template.yaml as the local stack reads it: functions, their events, queues, secrets, parameters,
and a resolver of CloudFormation intrinsics (!Ref, !GetAtt, !Sub, !If, !FindInMap, ...) over local values.

Nothing here is specific to leadflow's resources: a route, queue or event source added to the
template appears locally.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"


class TemplateError(RuntimeError):
    """The template uses something the local stack cannot run; the message says what."""


# ---------------------------------------------------------------------------------------------
# Reading: YAML with CloudFormation's short-form tags turned into their long form


class _Loader(yaml.SafeLoader):
    pass


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "Condition":
        return {"Condition": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{suffix}": value}


_Loader.add_multi_constructor("!", _tag)


def load(path: Path = TEMPLATE) -> dict[str, Any]:
    text = path.read_text()
    data = yaml.load(text, Loader=_Loader)  # noqa: S506  # nosec B506 # _Loader is a SafeLoader subclass
    if not isinstance(data, dict) or "Resources" not in data:
        raise TemplateError(f"{path} is not a CloudFormation template")
    return data


# ---------------------------------------------------------------------------------------------
# What the template declares


@dataclass(frozen=True, slots=True)
class HttpRoute:
    method: str  # GET, POST, ... or ANY
    path: str  # /leads/{lead_id}/score, /{proxy+}, $default
    function: str  # logical id
    api: str  # the HttpApi's logical id
    authorizer: str | None  # None: no authorizer on this route


@dataclass(frozen=True, slots=True)
class SqsSource:
    function: str
    event: str  # the event's name under Events
    queue: str  # the queue's logical id
    batch_size: int
    report_failures: bool
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Schedule:
    function: str
    event: str
    expression: Any  # unresolved: rate(...) after resolution
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory: int
    environment: dict[str, Any]  # unresolved values
    url_auth: str | None  # FunctionUrlConfig.AuthType, None without a Function URL

    @property
    def short(self) -> str:
        """WebhookFunction -> webhook: the name the log uses."""
        name = self.logical_id.removesuffix("Function")
        return re.sub(r"(?<!^)(?=[A-Z])", "-", name).lower() or self.logical_id


@dataclass(frozen=True, slots=True)
class JwtAuthorizer:
    name: str
    issuer: Any  # unresolved
    audience: Any  # unresolved


@dataclass(slots=True)
class Stack:
    """Everything the local stack runs, read from one template."""

    raw: dict[str, Any]
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    routes: list[HttpRoute] = field(default_factory=list)
    sqs_sources: list[SqsSource] = field(default_factory=list)
    schedules: list[Schedule] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)  # logical ids, dead-letter queues first
    secrets: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)  # DynamoDB tables (logical ids)
    authorizers: dict[str, dict[str, JwtAuthorizer]] = field(default_factory=dict)  # api -> name -> authorizer
    default_authorizer: dict[str, str | None] = field(default_factory=dict)  # api -> name
    unsupported: list[str] = field(default_factory=list)  # what is declared but not run, for the log

    @property
    def resources(self) -> dict[str, Any]:
        return dict(self.raw["Resources"])

    def parameter_defaults(self) -> dict[str, Any]:
        return {name: spec.get("Default") for name, spec in self.raw.get("Parameters", {}).items()}


def read(path: Path = TEMPLATE) -> Stack:
    raw = load(path)
    stack = Stack(raw)
    resources: dict[str, Any] = raw["Resources"]
    function_globals = raw.get("Globals", {}).get("Function", {})
    base = path.parent
    for logical_id, resource in resources.items():
        kind, props = resource.get("Type"), resource.get("Properties", {}) or {}
        if kind == "AWS::Serverless::Function":
            _read_function(stack, logical_id, props, function_globals, base)
        elif kind == "AWS::SQS::Queue":
            stack.queues.append(logical_id)
        elif kind == "AWS::SecretsManager::Secret":
            stack.secrets.append(logical_id)
        elif kind == "AWS::DynamoDB::Table":
            stack.tables.append(logical_id)
        elif kind == "AWS::Serverless::HttpApi":
            _read_http_api(stack, logical_id, props)
    stack.queues = _dead_letter_first(stack.queues, resources)
    return stack


def _read_function(stack: Stack, logical_id: str, props: dict[str, Any], glob: dict[str, Any], base: Path) -> None:
    def prop(name: str, default: Any = None) -> Any:
        return props.get(name, glob.get(name, default))

    env = dict(glob.get("Environment", {}).get("Variables", {}))
    env.update(props.get("Environment", {}).get("Variables", {}))
    code_uri = prop("CodeUri")
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id}: CodeUri must be a local path")
    url = props.get("FunctionUrlConfig")
    stack.functions[logical_id] = FunctionSpec(
        logical_id=logical_id,
        code_dir=(base / code_uri).resolve(),
        handler=str(prop("Handler", "app.lambda_handler")),
        timeout=int(prop("Timeout", 3)),
        memory=int(prop("MemorySize", 128)),
        environment=env,
        url_auth=str(url.get("AuthType", "NONE")) if isinstance(url, dict) else None,
    )
    for event_name, event in (props.get("Events") or {}).items():
        kind, eprops = event.get("Type"), event.get("Properties", {}) or {}
        if kind == "HttpApi":
            api = (
                eprops.get("ApiId", {}).get("Ref", "ServerlessHttpApi") if eprops.get("ApiId") else "ServerlessHttpApi"
            )
            auth = eprops.get("Auth", {}).get("Authorizer", "") if isinstance(eprops.get("Auth"), dict) else ""
            stack.routes.append(
                HttpRoute(
                    method=str(eprops.get("Method", "ANY")).upper().replace("*", "ANY"),
                    path=str(eprops.get("Path", "$default")),
                    function=logical_id,
                    api=api,
                    authorizer=None if auth == "NONE" else (auth or "__default__"),
                )
            )
        elif kind == "SQS":
            queue = eprops.get("Queue")
            if not (isinstance(queue, dict) and "Fn::GetAtt" in queue):
                raise TemplateError(f"{logical_id}.{event_name}: Queue must be !GetAtt <Queue>.Arn")
            stack.sqs_sources.append(
                SqsSource(
                    function=logical_id,
                    event=event_name,
                    queue=queue["Fn::GetAtt"][0],
                    batch_size=int(eprops.get("BatchSize", 10)),
                    report_failures="ReportBatchItemFailures" in (eprops.get("FunctionResponseTypes") or []),
                    enabled=eprops.get("Enabled", True) is not False,
                )
            )
        elif kind in ("Schedule", "ScheduleV2"):
            expression = eprops.get("Schedule", eprops.get("ScheduleExpression"))
            enabled = eprops.get("Enabled", True) is not False and eprops.get("State", "ENABLED") != "DISABLED"
            stack.schedules.append(Schedule(logical_id, event_name, expression, enabled))
        else:
            stack.unsupported.append(f"{logical_id}.{event_name} ({kind})")


def _read_http_api(stack: Stack, logical_id: str, props: dict[str, Any]) -> None:
    auth = props.get("Auth") or {}
    found: dict[str, JwtAuthorizer] = {}
    for name, spec in (auth.get("Authorizers") or {}).items():
        jwt = spec.get("JwtConfiguration")
        if jwt:
            found[name] = JwtAuthorizer(name, jwt.get("issuer"), jwt.get("audience"))
        else:
            stack.unsupported.append(f"{logical_id} authorizer {name} (not JWT: routes using it are open locally)")
    stack.authorizers[logical_id] = found
    stack.default_authorizer[logical_id] = auth.get("DefaultAuthorizer")


def _dead_letter_first(queues: list[str], resources: Mapping[str, Any]) -> list[str]:
    """Queues ordered so a dead-letter queue exists before the queue whose RedrivePolicy names it."""
    ordered: list[str] = []

    def visit(name: str, seen: tuple[str, ...] = ()) -> None:
        if name in ordered or name in seen:
            return
        policy = resources[name].get("Properties", {}).get("RedrivePolicy") or {}
        target = policy.get("deadLetterTargetArn")
        if isinstance(target, dict) and "Fn::GetAtt" in target and target["Fn::GetAtt"][0] in resources:
            visit(target["Fn::GetAtt"][0], (*seen, name))
        ordered.append(name)

    for queue in queues:
        visit(queue)
    return ordered


# ---------------------------------------------------------------------------------------------
# Resolving intrinsics with local values

NO_VALUE = object()  # AWS::NoValue: the property is left out


@dataclass(slots=True)
class Resolver:
    raw: dict[str, Any]
    parameters: dict[str, Any]
    refs: dict[str, Any] = field(default_factory=dict)  # logical id -> what !Ref gives locally
    attributes: dict[tuple[str, str], Any] = field(default_factory=dict)  # (logical id, attribute) -> value
    pseudo: dict[str, Any] = field(
        default_factory=lambda: {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::StackName": "leadflow",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/leadflow/local",
        }
    )

    def condition(self, name: str) -> bool:
        conditions = self.raw.get("Conditions", {})
        if name not in conditions:
            raise TemplateError(f"unknown condition {name}")
        return bool(self.resolve(conditions[name]))

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.parameters:
            return self.parameters[name]
        if name in self.refs:
            return self.refs[name]
        if name in self.raw.get("Resources", {}):
            return name  # a resource the local stack does not create: its name stands in
        raise TemplateError(f"!Ref {name}: no such parameter or resource")

    def get_att(self, name: str, attribute: str) -> Any:
        if (name, attribute) in self.attributes:
            return self.attributes[(name, attribute)]
        return f"{name}.{attribute}"  # not created locally (a log group, the cache): a placeholder

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            items = [self.resolve(v) for v in value]
            return [v for v in items if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::GetAtt":
                name, attribute = arg if isinstance(arg, list) else str(arg).split(".", 1)
                return self.get_att(name, attribute)
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::If":
                name, yes, no = arg
                return self.resolve(yes if self.condition(name) else no)
            if key == "Fn::Equals":
                left, right = (self.resolve(v) for v in arg)
                return str(left) == str(right)
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(v) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v) for v in arg)
            if key == "Fn::FindInMap":
                mapping, first, second = (self.resolve(v) for v in arg)
                return self.raw["Mappings"][mapping][str(first)][str(second)]
            if key == "Fn::Join":
                sep, items = arg
                return str(sep).join(str(v) for v in self.resolve(items))
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if key.startswith("Fn::"):
                raise TemplateError(f"{key} is not supported by the local stack")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not NO_VALUE}

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        local = {k: self.resolve(v) for k, v in variables.items()}

        def one(match: re.Match[str]) -> str:
            name = match[1]
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name and name.split(".", 1)[0] in self.raw.get("Resources", {}):
                resource, attribute = name.split(".", 1)
                return str(self.get_att(resource, attribute))
            return str(self.ref(name))

        return re.sub(r"\$\{([^}]+)\}", one, str(text))


def rate_seconds(expression: str) -> int | None:
    """`rate(5 minutes)` -> 300; None for a cron() expression or anything else."""
    match = re.fullmatch(r"\s*rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)\s*", expression)
    if not match:
        return None
    unit = {"minute": 60, "hour": 3600, "day": 86400}[match[2].rstrip("s")]
    return int(match[1]) * unit
