"""What an OpenTelemetry Collector or Fluent Bit configuration will send to Dynatrace (pure).

`read_config(path, env)` reads one configuration file the way its tool would, expands its
variables from `env`, and returns a `Reading`: the Dynatrace targets it sends to (logs URL,
protocol, Authorization, CA file), the variables it uses, and the problems that would make the
tool lose data once started. No network; files are read only to load the configuration, its
includes and the CA files it names.

Problems (each one a sentence with its fix; the token's value never appears in any):
- a variable without a default that is unset or empty: the Collector only warns and Fluent Bit
  expands it to nothing, then every request fails (401 for a token);
- a Collector OTLP/HTTP endpoint whose logs URL does not end in exactly one
  `/api/v2/otlp/v1/logs` (the exporter appends `/v1/logs`; a DT_ENDPOINT that already ends in
  `/api/v2/otlp`, as Dynatrace's Collector page writes it, doubles the path: 404); a Fluent Bit
  `URI`/`Logs_uri` that is not the log ingest or OTLP logs path;
- a CA file that does not exist or holds no PEM certificate; TLS verification switched off; a
  token that would travel over plain http:// to a host other than loopback;
- no output that sends logs to Dynatrace at all.

Collector: `${env:NAME}`, `${NAME}` and `${env:NAME:-default}` (the default applies only when
NAME is unset, as in the Collector); `$$` is a literal `$`. Fluent Bit: `${NAME}`, from `@SET`
(classic) or the `env:` section (YAML) first, then the environment; `@INCLUDE` and `includes:`
are followed relative to the including file.
"""

from __future__ import annotations

import glob
import importlib
import os
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from dt_exporter.config import Secret, is_loopback

Kind = Literal["collector", "fluent-bit"]
Protocol = Literal["json", "otlp"]
VariableState = Literal["set", "default", "unset", "empty"]

OTLP_LOGS_PATH: Final = "/api/v2/otlp/v1/logs"
JSON_LOGS_PATH: Final = "/api/v2/logs/ingest"
#: The Collector's OTLP/HTTP exporter: `otlp_http` since v0.144, `otlphttp` before (an alias).
COLLECTOR_OTLP_HTTP: Final = frozenset({"otlp_http", "otlphttp"})
#: Fluent Bit outputs that speak to Dynatrace, and what they send.
FLUENT_BIT_OUTPUTS: Final[dict[str, Protocol]] = {"http": "json", "opentelemetry": "otlp"}
#: Dynatrace's documented OTLP log request limit (uncompressed).
OTLP_REQUEST_LIMIT: Final = 2_000_000
_MAX_INCLUDE_DEPTH: Final = 8

_COLLECTOR_REF: Final = re.compile(
    r"\$\$|\$\{(?:(?P<scheme>[a-z]+):)?(?P<name>[^}:]+?)(?::-(?P<default>[^}]*))?\}"
)
_FLUENT_BIT_REF: Final = re.compile(r"\$\{(?P<name>[^}]+)\}")
_ENV_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TRUE: Final = frozenset({"on", "true", "yes", "1"})
_FALSE: Final = frozenset({"off", "false", "no", "0"})


class ConfigFileError(ValueError):
    """The file cannot be read or is not a configuration of a tool this module knows."""


@dataclass(frozen=True, slots=True)
class Target:
    """One output that sends logs to Dynatrace: where requests go and with what."""

    where: str  # the component in the file: `exporters.otlp_http/dynatrace`, `[OUTPUT] http`
    url: str  # the logs URL each request goes to
    protocol: Protocol
    authorization: Secret | None  # the Authorization header's value
    ca_file: str | None


@dataclass(frozen=True, slots=True)
class Reading:
    """What `read_config` found: targets, variables and problems, in file order."""

    kind: Kind
    targets: tuple[Target, ...]
    variables: Mapping[str, VariableState]
    problems: tuple[str, ...]
    warnings: tuple[str, ...] = ()


@dataclass
class _Findings:
    variables: dict[str, VariableState] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: Settings that hold an unset variable: their other checks would only repeat the problem.
    unresolved: set[str] = field(default_factory=set)

    def note(self, name: str, state: VariableState) -> None:
        # The worst state seen wins: one unguarded use of an unset variable is a problem.
        order = ("set", "default", "empty", "unset")
        if order.index(state) >= order.index(self.variables.get(name, "set")):
            self.variables[name] = state


def read_config(path: Path, env: Mapping[str, str]) -> Reading:
    """Read `path` (a Collector YAML, a Fluent Bit `.conf` or `.yaml`) with variables from `env`.

    Raises `ConfigFileError` if the file cannot be read or parsed, or is neither tool's.
    """
    if path.suffix.lower() == ".conf":
        return _fluent_bit(_read_classic(path), path, env)
    document = _load_yaml(path)
    if "exporters" in document or "receivers" in document:
        return _collector(document, env)
    if "pipeline" in document:
        return _fluent_bit(_read_fluent_bit_yaml(document, path), path, env)
    raise ConfigFileError(
        f"{path} is neither an OpenTelemetry Collector configuration (no `exporters:`) nor a "
        "Fluent Bit one (no `pipeline:`)"
    )


# -- OpenTelemetry Collector ---------------------------------------------------------------


def _collector(document: dict[str, Any], env: Mapping[str, str]) -> Reading:
    found = _Findings()
    expanded = _expand_tree(document, "", lambda text, where: _expand_collector(
        text, where, env, found))
    exporters = expanded.get("exporters") or {}
    raw_exporters = document.get("exporters") or {}
    used: list[str] = []
    for pipeline in ((expanded.get("service") or {}).get("pipelines") or {}).values():
        for name in (pipeline or {}).get("exporters") or []:
            if name not in used:
                used.append(str(name))
    targets = []
    for name in used:
        kind = name.split("/", 1)[0]
        if kind not in COLLECTOR_OTLP_HTTP:
            found.warnings.append(f"exporters.{name}: not checked (only otlp_http sends to "
                                  "Dynatrace)")
            continue
        config = exporters.get(name) or {}
        raw = raw_exporters.get(name) or {}
        target = _collector_target(f"exporters.{name}", config, raw, found)
        if target is not None:
            targets.append(target)
        if kind == "otlphttp":
            found.warnings.append(f"exporters.{name}: `otlphttp` is a deprecated alias since "
                                  "Collector v0.144 (use `otlp_http` there; older releases "
                                  "know only `otlphttp`)")
        _collector_limits(f"exporters.{name}", config, found)
    if not any(name.split("/", 1)[0] in COLLECTOR_OTLP_HTTP for name in used):
        found.problems.append("No otlp_http exporter is used by any pipeline in "
                              "service.pipelines: nothing would reach Dynatrace.")
    return Reading("collector", tuple(targets), dict(found.variables), tuple(found.problems),
                   tuple(found.warnings))


def _expand_collector(text: str, where: str, env: Mapping[str, str], found: _Findings) -> str:
    def replace(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        scheme, name, default = match["scheme"], match["name"], match["default"]
        if scheme not in (None, "env") or not _ENV_NAME.fullmatch(name):
            found.warnings.append(f"{where}: {match[0]} is not an environment variable; not "
                                  "checked")
            return match[0]
        value = env.get(name)
        if value is None:
            if default is not None:
                found.note(name, "default")
                return default
            found.note(name, "unset")
            found.unresolved.add(where)
            found.problems.append(
                f"{where}: {match[0]} is not set. The Collector would only warn and use an "
                f"empty value; set {name} (in the environment the Collector runs with).")
            return ""
        if value == "":
            found.note(name, "empty")
            found.unresolved.add(where)
            extra = (" (the default applies only when it is unset)" if default is not None
                     else "")
            found.problems.append(f"{where}: {name} is set but empty{extra}; give it a value "
                                  "or unset it.")
            return ""
        found.note(name, "set")
        return value

    return _COLLECTOR_REF.sub(replace, text)


def _collector_target(
    where: str, config: Mapping[str, Any], raw: Mapping[str, Any], found: _Findings
) -> Target | None:
    logs_endpoint = config.get("logs_endpoint")
    endpoint = config.get("endpoint")
    if logs_endpoint:
        url, source, raw_value = str(logs_endpoint), "logs_endpoint", raw.get("logs_endpoint")
    elif endpoint:
        base = str(endpoint)
        url = base + ("v1/logs" if base.endswith("/") else "/v1/logs")
        source, raw_value = "endpoint", raw.get("endpoint")
    else:
        found.problems.append(f"{where}: neither endpoint nor logs_endpoint is set.")
        return None
    setting = f"{where}.{source}"
    if setting in found.unresolved or not _check_url(setting, url, OTLP_LOGS_PATH, found):
        return None
    path = urlsplit(url).path
    if path.count("/api/v2/otlp") > 1:
        names = _COLLECTOR_REF.findall(str(raw_value or ""))
        variables = ", ".join(sorted({n for _, n, _ in names if n})) or "the endpoint"
        found.problems.append(
            f"{setting}: requests would go to {_shown(url)}, with /api/v2/otlp twice (404). "
            f"{variables} must be the environment's base URL (e.g. "
            "https://{env-id}.live.dynatrace.com, no /api/v2/otlp): this config appends it.")
    elif not path.endswith(OTLP_LOGS_PATH):
        hint = ("the Collector appends /v1/logs to `endpoint`, so it must end in /api/v2/otlp"
                if source == "endpoint" else f"it must end in {OTLP_LOGS_PATH}")
        found.problems.append(f"{setting}: requests would go to {_shown(url)}, which is not "
                              f"Dynatrace's OTLP logs path; {hint}.")
    headers = {str(k).lower(): str(v) for k, v in (config.get("headers") or {}).items()}
    tls = config.get("tls") or {}
    if _truthy(tls.get("insecure_skip_verify")):
        found.problems.append(f"{where}.tls.insecure_skip_verify is true: the token would go to "
                              "whoever answers. Trust the server's CA with tls.ca_file instead.")
    ca_file = _check_ca_file(f"{where}.tls.ca_file", tls.get("ca_file"), found)
    return _target(where, url, "otlp", headers.get("authorization"), ca_file, found)


def _collector_limits(where: str, config: Mapping[str, Any], found: _Findings) -> None:
    """Warnings for settings that lose data under load (not refusals: the config still works)."""
    batch = (config.get("sending_queue") or {}).get("batch")
    if not isinstance(batch, Mapping) or batch.get("sizer") != "bytes" or not (
        0 < _int(batch.get("max_size")) < OTLP_REQUEST_LIMIT
    ):
        found.warnings.append(
            f"{where}: requests are not capped in bytes below 2 MB (sending_queue.batch with "
            "sizer: bytes and max_size, e.g. 1900000): a larger batch gets 413 and is dropped "
            "whole. See collector-config/otelcol/saas.yaml.")
    retry = config.get("retry_on_failure") or {}
    elapsed = str(retry.get("max_elapsed_time", "300s"))
    if _truthy(retry.get("enabled", True)) and elapsed in ("300s", "5m", "120s", "2m"):
        found.warnings.append(
            f"{where}: retry_on_failure.max_elapsed_time {elapsed} drops the requests in flight "
            "in every outage longer than that; the shipped configs use 1h.")


# -- Fluent Bit ----------------------------------------------------------------------------

#: A Fluent Bit configuration in one shape for both formats: [(section, {key: [values]})],
#: keys lower-cased, plus the variables `@SET` / `env:` define.
Sections = list[tuple[str, dict[str, list[str]]]]


@dataclass
class _FluentBitFile:
    sections: Sections = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)


def _read_classic(path: Path, depth: int = 0, into: _FluentBitFile | None = None) -> _FluentBitFile:
    result = _FluentBitFile() if into is None else into
    if depth > _MAX_INCLUDE_DEPTH:
        raise ConfigFileError(f"{path}: @INCLUDE nested more than {_MAX_INCLUDE_DEPTH} deep")
    current: dict[str, list[str]] | None = None
    for lineno, raw in enumerate(_read_text(path).splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = {}
            result.sections.append((line[1:-1].strip().upper(), current))
            continue
        if line.startswith("@"):
            directive, _, argument = line.partition(" ")
            if directive.upper() == "@SET":
                name, _, value = argument.strip().partition("=")
                result.variables[name.strip()] = value.strip()
            elif directive.upper() == "@INCLUDE":
                pattern = str(path.parent / argument.strip())
                for included in sorted(glob.glob(pattern)) or [pattern]:
                    _read_classic(Path(included), depth + 1, result)
                current = None
            continue
        if current is None:
            raise ConfigFileError(f"{path}:{lineno}: a setting outside any [SECTION]")
        key, _, value = line.partition(" ")
        current.setdefault(key.lower(), []).append(value.strip())
    return result


def _read_fluent_bit_yaml(document: dict[str, Any], path: Path, depth: int = 0) -> _FluentBitFile:
    if depth > _MAX_INCLUDE_DEPTH:
        raise ConfigFileError(f"{path}: includes nested more than {_MAX_INCLUDE_DEPTH} deep")
    result = _FluentBitFile()
    for included in document.get("includes") or []:
        nested = _read_fluent_bit_yaml(_load_yaml(path.parent / str(included)),
                                       path.parent / str(included), depth + 1)
        result.sections.extend(nested.sections)
        result.variables.update(nested.variables)
    result.variables.update({str(k): _scalar(v) for k, v in (document.get("env") or {}).items()})
    if isinstance(document.get("service"), Mapping):
        result.sections.append(("SERVICE", _props(document["service"])))
    pipeline = document.get("pipeline") or {}
    for key, section in (("inputs", "INPUT"), ("filters", "FILTER"), ("outputs", "OUTPUT")):
        for entry in pipeline.get(key) or []:
            if isinstance(entry, Mapping):
                result.sections.append((section, _props(entry)))
    return result


def _props(mapping: Mapping[Any, Any]) -> dict[str, list[str]]:
    props: dict[str, list[str]] = {}
    for key, value in mapping.items():
        values = value if isinstance(value, list) else [value]
        props[str(key).lower()] = [_scalar(v) for v in values]
    return props


def _scalar(value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    return "" if value is None else str(value)


def _fluent_bit(config: _FluentBitFile, path: Path, env: Mapping[str, str]) -> Reading:
    found = _Findings()
    variables = {**env, **config.variables}
    sections: Sections = []
    for name, props in config.sections:
        index = sum(1 for other, _ in sections if other == name) + 1
        where = f"[{name}] #{index}"
        sections.append((name, {
            key: [_expand_fluent_bit(v, f"{where} {key}", variables, found) for v in values]
            for key, values in props.items()
        }))
    for name, props in sections:
        if name == "SERVICE" and props.get("parsers_file"):
            parsers = path.parent / props["parsers_file"][-1]
            if not parsers.is_file():
                found.problems.append(f"[SERVICE] Parsers_File {parsers} does not exist; Fluent "
                                      "Bit would not start (keep it beside the config).")
    targets = []
    outputs = [props for name, props in sections if name == "OUTPUT"]
    for index, props in enumerate(outputs, start=1):
        plugin = _last(props, "name").lower()
        where = f"[OUTPUT] #{index} ({plugin})"
        if plugin not in FLUENT_BIT_OUTPUTS:
            found.warnings.append(f"{where}: not checked (only http and opentelemetry send to "
                                  "Dynatrace)")
            continue
        target = _fluent_bit_target(where, f"[OUTPUT] #{index}", plugin, props, found)
        if target is not None:
            targets.append(target)
    if not any(_last(p, "name").lower() in FLUENT_BIT_OUTPUTS for p in outputs):
        found.problems.append("No http or opentelemetry [OUTPUT]: nothing would reach "
                              "Dynatrace.")
    return Reading("fluent-bit", tuple(targets), dict(found.variables), tuple(found.problems),
                   tuple(found.warnings))


def _expand_fluent_bit(
    text: str, where: str, variables: Mapping[str, str], found: _Findings
) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        value = variables.get(name)
        if value is None or value == "":
            found.note(name, "unset" if value is None else "empty")
            found.unresolved.add(where)
            state = "not set" if value is None else "set but empty"
            found.problems.append(
                f"{where}: ${{{name}}} is {state}. Fluent Bit would expand it to nothing (and "
                f"`--dry-run` passes); set {name} in the environment Fluent Bit runs with.")
            return ""
        found.note(name, "set")
        return value

    return _FLUENT_BIT_REF.sub(replace, text)


def _fluent_bit_target(
    where: str, section: str, plugin: str, props: Mapping[str, list[str]], found: _Findings
) -> Target | None:
    protocol = FLUENT_BIT_OUTPUTS[plugin]
    if {f"{section} {key}" for key in ("host", "port", "uri", "logs_uri")} & found.unresolved:
        return None
    host = _last(props, "host") or "127.0.0.1"
    if "/" in host or ":" in host:
        found.problems.append(f"{where} Host is {host!r}: it takes a host name only, no "
                              "scheme, port or path (e.g. DT_HOST={env-id}.live.dynatrace.com).")
        return None
    tls = _truthy(_last(props, "tls") or "off")
    port = _last(props, "port") or "80"
    if plugin == "http":
        uri_key, expected = "uri", JSON_LOGS_PATH
        uri = _last(props, "uri") or "/"
        if (_last(props, "format") or "msgpack").lower() != "json":
            found.problems.append(f"{where} Format must be json for {JSON_LOGS_PATH}.")
    else:
        uri_key, expected = "logs_uri", OTLP_LOGS_PATH
        uri = _last(props, "logs_uri") or "/v1/logs"
        if _truthy(_last(props, "grpc") or "off"):
            found.problems.append(f"{where} grpc is on: Dynatrace takes OTLP over HTTP only.")
    url = f"{'https' if tls else 'http'}://{host}:{port}{uri}"
    if not _check_url(f"{where} {uri_key}", url, expected, found):
        return None
    path = urlsplit(url).path
    if not path.endswith(expected) or path.count("/api/v2/") != 1:
        found.problems.append(f"{where} {uri_key} is {uri!r}: requests would go to "
                              f"{_shown(url)}; Dynatrace's path is {expected} (with "
                              "/e/{env-id} in front for an ActiveGate or Managed).")
    if tls and not _truthy(_last(props, "tls.verify") or "on"):
        found.problems.append(f"{where} tls.verify is off: the token would go to whoever "
                              "answers. Trust the server's CA with tls.ca_file instead.")
    ca_file = _check_ca_file(f"{where} tls.ca_file", _last(props, "tls.ca_file") or None, found)
    authorization = None
    for header in props.get("header", []):
        name, _, value = header.strip().partition(" ")
        if name.lower() == "authorization":
            authorization = value.strip()
    return _target(where, url, protocol, authorization, ca_file, found)


# -- shared checks -------------------------------------------------------------------------


def _check_url(setting: str, url: str, expected: str, found: _Findings) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        found.problems.append(f"{setting}: {_shown(url)} is not a valid URL.")
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname:
        found.problems.append(f"{setting}: {_shown(url)} is not an http(s) URL with a host "
                              f"(requests must go to https://{{host}}{expected}).")
        return False
    if parts.hostname.endswith(".apps.dynatrace.com"):
        found.problems.append(f"{setting}: {parts.hostname} is the web UI's host; the ingest "
                              "APIs are on {env-id}.live.dynatrace.com (.apps. answers 404).")
    return True


def _check_ca_file(setting: str, value: object, found: _Findings) -> str | None:
    if value in (None, ""):
        return None
    path = str(value)
    if not os.path.isfile(path):
        found.problems.append(f"{setting}: {path} does not exist (or is not a file): every TLS "
                              "handshake would fail. Point it at the PEM file of the CA that "
                              "signed the server's certificate.")
        return None
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, OSError, ValueError) as error:
        found.problems.append(f"{setting}: {path} is not a readable PEM certificate file "
                              f"({error.__class__.__name__}).")
        return None
    return path


def _target(
    where: str, url: str, protocol: Protocol, authorization: str | None, ca_file: str | None,
    found: _Findings,
) -> Target:
    host = urlsplit(url).hostname or ""
    if authorization is None or len(authorization.split()) < 2:
        found.problems.append(f"{where}: no Authorization header with a token "
                              "(\"Api-Token <token>\"): Dynatrace would answer 401 to every "
                              "request.")
    elif url.startswith("http://") and not is_loopback(host):
        found.problems.append(f"{where}: the token would travel in plain text to {host}; use "
                              "https (Fluent Bit: tls On).")
    return Target(where, url, protocol, Secret(authorization) if authorization else None,
                  ca_file)


def _expand_tree(node: Any, where: str, expand: Callable[[str, str], str]) -> Any:
    if isinstance(node, dict):
        return {key: _expand_tree(value, f"{where}.{key}" if where else str(key), expand)
                for key, value in node.items()}
    if isinstance(node, list):
        return [_expand_tree(value, f"{where}[{i}]", expand) for i, value in enumerate(node)]
    if isinstance(node, str):
        return expand(node, where)
    return node


def _last(props: Mapping[str, list[str]], key: str) -> str:
    values = props.get(key)
    return values[-1].strip() if values else ""


def _truthy(value: object) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in _TRUE


def _int(value: object) -> int:
    try:
        return int(str(value).replace("_", ""))
    except ValueError:
        return 0


def _shown(url: str) -> str:
    """`url` without any user:password part (never shown)."""
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigFileError(f"cannot read {path}: {error.__class__.__name__}") from None


def _load_yaml(path: Path) -> dict[str, Any]:
    try:  # PyYAML ships no type hints: used through Any
        yaml: Any = importlib.import_module("yaml")
    except ImportError:
        raise ConfigFileError(
            "reading YAML needs PyYAML, which a plain `pip install dt_exporter` does not bring: "
            "pip install 'dt_exporter[preflight]' (or pip install pyyaml)"
        ) from None
    try:
        document = yaml.safe_load(_read_text(path))
    except yaml.YAMLError as error:
        raise ConfigFileError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ConfigFileError(f"{path} does not hold a YAML mapping")
    return document
