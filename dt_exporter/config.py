"""`ExporterConfig`: the one place that reads environment variables.

Precedence: constructor keyword arguments, then `DT_*` environment variables, then defaults.
Every setting is listed in the README's configuration table with its default.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from types import MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from dt_exporter.errors import ConfigError
from dt_exporter.limits import (
    DEFAULT_JSON_REQUEST_BYTES,
    DEFAULT_OTLP_REQUEST_BYTES,
    LOGS_MAX_RECORDS_PER_REQUEST,
    LOGS_MAX_REQUEST_BYTES,
    PROFILES,
    LimitProfile,
)

EndpointKind = Literal["saas", "managed", "activegate", "oneagent", "custom"]
Protocol = Literal["json", "otlp"]
Compression = Literal["gzip", "none"]

ONEAGENT_DEFAULT_ENDPOINT: Final = "http://localhost:14499"
#: Suffixes a user may paste as part of DT_ENDPOINT; we keep the environment's base URL.
_API_SUFFIXES: Final = (
    "/api/v2/logs/ingest",
    "/api/v2/otlp/v1/logs",
    "/api/v2/otlp",
    "/api/v2/events/ingest",
    "/api/v2",
)
#: OneAgent's local API has no `/api` prefix: http://localhost:14499/v2/logs/ingest
_ONEAGENT_SUFFIXES: Final = ("/v2/logs/ingest", "/v2/events/ingest")
_LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain"})
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


class Secret:
    """A string that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where an environment lives, and the URL of each ingest API under it."""

    base_url: str
    kind: EndpointKind

    @property
    def is_oneagent(self) -> bool:
        return self.kind == "oneagent"

    @property
    def logs_url(self) -> str:
        suffix = "/v2/logs/ingest" if self.is_oneagent else "/api/v2/logs/ingest"
        return self.base_url + suffix

    @property
    def otlp_logs_url(self) -> str:
        return self.base_url + "/api/v2/otlp/v1/logs"

    @property
    def events_url(self) -> str:
        suffix = "/v2/events/ingest" if self.is_oneagent else "/api/v2/events/ingest"
        return self.base_url + suffix

    def security_events_url(self, endpoint_name: str, *, legacy: bool = False) -> str:
        table = "events.security" if legacy else "security.events"
        return f"{self.base_url}/platform/ingest/custom/{table}/{endpoint_name}"


#: Proxy URL schemes urllib3 speaks without extra packages (socks needs PySocks: not supported).
_PROXY_SCHEMES: Final = ("http", "https")
_PROXY_PROBLEM: Final = (
    "expected a proxy URL like http://[user:password@]host:port, or none "
    "(socks proxies are not supported)"
)


def redact_url(url: str) -> str:
    """`url` with any password replaced by `***` (a user name alone, which may be a token, too):
    `http://user:***@proxy:3128`. What the CLI and reprs show of a proxy URL."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    shown = f"{userinfo.split(':', 1)[0]}:***" if ":" in userinfo else "***"
    return parts._replace(netloc=f"{shown}@{host}").geturl()


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """The forward proxies for the exporter's requests, resolved once from the environment.

    `http` serves http:// targets and `https` https:// targets (through a CONNECT tunnel); each
    is a full proxy URL whose credentials, if any, are sent as `Proxy-Authorization`. `no_proxy`
    lists the `NO_PROXY` entries (lower case): hosts, `.domain` suffixes, IPs, CIDR ranges, an
    optional `:port`, or `*`. `*_source` name the variable each URL came from, for messages.
    The transport decides per URL (`dt_exporter._transport.select_proxy`).
    """

    http: Secret | None = None
    https: Secret | None = None
    no_proxy: tuple[str, ...] = ()
    http_source: str = ""
    https_source: str = ""

    def __repr__(self) -> str:
        def shown(url: Secret | None, source: str) -> str:
            return "None" if url is None else f"{redact_url(url.reveal())!r} ({source})"

        return (f"ProxySettings(http={shown(self.http, self.http_source)}, "
                f"https={shown(self.https, self.https_source)}, no_proxy={self.no_proxy!r})")


#: No proxy at all.
DIRECT: Final = ProxySettings()


def parse_proxy_url(variable: str, raw: str) -> Secret:
    """One proxy URL, normalised (`host:port` gets `http://`); ConfigError names `variable`,
    never the value (it may hold a password)."""
    value = raw.strip()
    if "://" not in value:
        value = f"http://{value}"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError(variable, _PROXY_PROBLEM) from None
    if (parts.scheme.lower() not in _PROXY_SCHEMES or not parts.hostname
            or parts.path not in ("", "/") or parts.query or parts.fragment
            or any(ch.isspace() for ch in value)):
        raise ConfigError(variable, _PROXY_PROBLEM)
    return Secret(f"{parts.scheme.lower()}://{parts.netloc}")


def _proxy_env(env: Mapping[str, str], scheme: str) -> tuple[str | None, str]:
    """`{scheme}_proxy` as urllib (and so requests) reads it: the lower-case name wins, even set
    empty; the upper-case HTTP_PROXY is ignored under CGI (REQUEST_METHOD set: httpoxy)."""
    lower, upper = f"{scheme}_proxy", f"{scheme.upper()}_PROXY"
    if lower in env:
        return read_env(lower, env), lower
    if scheme == "http" and "REQUEST_METHOD" in env:
        return None, upper
    return read_env(upper, env), upper


def resolve_proxies(env: Mapping[str, str], explicit: object = None) -> ProxySettings:
    """`DT_EXPORTER_PROXY` (`explicit`: a URL for every target, or `none` for no proxy at all)
    wins; otherwise `HTTPS_PROXY` for https:// targets and `HTTP_PROXY` for http:// ones, with
    `ALL_PROXY` as the fallback for both, as `requests` does. `NO_PROXY` applies to either."""
    if isinstance(explicit, ProxySettings):
        return explicit
    variable = ENV_VARS["proxy"]
    raw = explicit.reveal() if isinstance(explicit, Secret) else explicit
    if raw is not None and not isinstance(raw, str):
        raise ConfigError(variable, _PROXY_PROBLEM)
    if raw is not None and raw.strip().lower() == "none":
        return DIRECT
    no_proxy_raw, _ = _proxy_env(env, "no")
    no_proxy = tuple(
        entry for entry in (part.strip().lower() for part in (no_proxy_raw or "").split(","))
        if entry
    )
    if raw is not None and raw.strip():
        url = parse_proxy_url(variable, raw)
        return ProxySettings(url, url, no_proxy, variable, variable)
    found: dict[str, tuple[Secret | None, str]] = {}
    all_raw, all_name = _proxy_env(env, "all")
    for scheme in ("http", "https"):
        value, name = _proxy_env(env, scheme)
        if value is None and all_raw is not None:
            value, name = all_raw, all_name
        found[scheme] = (None, "") if value is None else (parse_proxy_url(name, value), name)
    if found["http"][0] is None and found["https"][0] is None:
        return DIRECT
    return ProxySettings(found["http"][0], found["https"][0], no_proxy,
                         found["http"][1], found["https"][1])


@dataclass(frozen=True, slots=True)
class ExporterConfig:
    """Every setting of dt_exporter, resolved and validated."""

    endpoint: Endpoint
    token: Secret | None = None
    protocol: Protocol = "json"
    compression: Compression = "gzip"
    gzip_level: int = 1
    timeout_s: float = 10.0
    ca_bundle: str | None = None
    insecure_skip_tls_verify: bool = False
    allow_insecure_http: bool = False
    limits: LimitProfile = field(default_factory=lambda: PROFILES["grail"])
    max_request_bytes: int = DEFAULT_JSON_REQUEST_BYTES
    max_records_per_request: int = LOGS_MAX_RECORDS_PER_REQUEST
    max_queue_bytes: int = 64 * 1024 * 1024
    retry_max_elapsed_s: float = 3600.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 30.0
    shutdown_timeout_s: float = 5.0
    structure: Literal["raw", "flattened"] | None = None
    spool_dir: str | None = None
    spool_max_bytes: int = 512 * 1024 * 1024
    event_routes: EventRoutes = field(default_factory=lambda: EventRoutes())
    events_compression: Compression = "none"
    #: where each setting came from (see `source`); not part of the value
    sources: Mapping[str, SettingSource] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )
    proxy: ProxySettings = DIRECT

    @property
    def authorization(self) -> str | None:
        """The Authorization header value, or None (OneAgent needs no token)."""
        if self.token is None:
            return None
        value = self.token.reveal()
        scheme = "Bearer" if value.startswith("dt0s16.") else "Api-Token"
        return f"{scheme} {value}"

    @property
    def logs_url(self) -> str:
        url = self.endpoint.otlp_logs_url if self.protocol == "otlp" else self.endpoint.logs_url
        return f"{url}?structure={self.structure}" if self.structure else url

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, **overrides: Any
    ) -> ExporterConfig:
        """Resolve keyword overrides, then `env` (default `os.environ`), then defaults."""
        return _Resolver(os.environ if env is None else env, overrides).resolve()

    def source(self, name: str) -> SettingSource:
        """Where setting `name` came from: a keyword argument, its environment variable, the
        default, or "derived" (another setting changed the default)."""
        return _source(self, name, self.sources.get(name))

    def __repr__(self) -> str:
        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self) if f.repr)
        return f"ExporterConfig({shown})"


SettingGroup = Literal["exporter", "events", "bridge", "enrichment"]
#: Where a setting's value came from; "derived": another setting changed its default (OneAgent
#: turns compression off, OTLP lowers the request size).
SettingSource = Literal["argument", "environment", "default", "derived"]


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table: `name` is the keyword argument, `env_var` the variable,
    `default` the default as the README's configuration table shows it, `description` one line.

    `group` says which object carries the value: `exporter` and `events` are `ExporterConfig`
    fields, `bridge` are `BridgeConfig`'s; `secret` values are never shown."""

    name: str
    env_var: str
    default: str
    description: str
    group: SettingGroup = "exporter"
    secret: bool = False


#: Every setting of dt_exporter, in the order of the README's configuration table (a unit test
#: holds the README to it). Only config.py reads these variables.
SETTINGS: Final[tuple[Setting, ...]] = (
    Setting("endpoint", "DT_ENDPOINT", "unset: OneAgent http://localhost:14499",
            "environment base URL, or a full ingest URL"),
    Setting("token", "DT_API_TOKEN", "none",
            "access token or platform token; not needed for OneAgent", secret=True),
    Setting("protocol", "DT_EXPORTER_PROTOCOL", "json", "json (log ingest API) or otlp"),
    Setting("compression", "DT_EXPORTER_COMPRESSION", "gzip (none for OneAgent)",
            "gzip or none for log bodies"),
    Setting("gzip_level", "DT_EXPORTER_GZIP_LEVEL", "1", "gzip level, 1 to 9"),
    Setting("timeout_s", "DT_EXPORTER_TIMEOUT", "10",
            "seconds one attempt may take: connect, send and the whole answer"),
    Setting("ca_bundle", "DT_EXPORTER_CA_BUNDLE", "system CAs", "PEM file of CAs to trust"),
    Setting("insecure_skip_tls_verify", "DT_EXPORTER_INSECURE_SKIP_TLS_VERIFY", "false",
            "turn TLS certificate verification off"),
    Setting("allow_insecure_http", "DT_EXPORTER_ALLOW_INSECURE_HTTP", "false",
            "allow a token over http:// to a non-loopback host"),
    Setting("limits", "DT_EXPORTER_LIMIT_PROFILE", "grail", "limit profile: grail or classic"),
    Setting("max_request_bytes", "DT_EXPORTER_MAX_REQUEST_BYTES", "9500000 JSON, 2000000 OTLP",
            "uncompressed bytes per request"),
    Setting("max_records_per_request", "DT_EXPORTER_MAX_RECORDS_PER_REQUEST", "50000",
            "records per request"),
    Setting("max_queue_bytes", "DT_EXPORTER_MAX_QUEUE_BYTES", "67108864 (64 MiB)",
            "bound of the delivery queue, compressed bytes"),
    Setting("retry_max_elapsed_s", "DT_EXPORTER_RETRY_MAX_ELAPSED", "3600",
            "seconds one body may be retried"),
    Setting("backoff_initial_s", "DT_EXPORTER_BACKOFF_INITIAL", "1",
            "first backoff in seconds, doubling each retry"),
    Setting("backoff_max_s", "DT_EXPORTER_BACKOFF_MAX", "30", "backoff cap in seconds"),
    Setting("shutdown_timeout_s", "DT_EXPORTER_SHUTDOWN_TIMEOUT", "5",
            "seconds shutdown() waits when the SDK gives no deadline"),
    Setting("structure", "DT_EXPORTER_STRUCTURE", "unset", "raw or flattened (?structure=)"),
    Setting("spool_dir", "DT_EXPORTER_SPOOL_DIR", "unset", "directory of the disk spool"),
    Setting("spool_max_bytes", "DT_EXPORTER_SPOOL_MAX_BYTES", "536870912",
            "size cap of the disk spool"),
    Setting("proxy", "DT_EXPORTER_PROXY", "HTTPS_PROXY / HTTP_PROXY / NO_PROXY",
            "forward proxy URL for every request (wins over HTTPS_PROXY), or none", secret=True),
    Setting("enrichment", "DT_EXPORTER_ENRICHMENT", "true",
            "read Dynatrace's enrichment files into resource attributes", group="enrichment"),
    Setting("event_routes", "DT_EXPORTER_EVENT_ROUTES", "unset: every record stays a log",
            "event name -> events:<TYPE> or security:<endpoint>, comma-separated",
            group="events"),
    Setting("events_compression", "DT_EXPORTER_EVENTS_COMPRESSION", "none",
            "gzip or none for the Events API", group="events"),
    Setting("span_events_include", "DT_EXPORTER_SPAN_EVENTS_INCLUDE", "all",
            "span event names the bridge turns into logs, comma-separated", group="bridge"),
    Setting("span_events_exclude", "DT_EXPORTER_SPAN_EVENTS_EXCLUDE", "none",
            "span event names never bridged, comma-separated", group="bridge"),
    Setting("span_events_level", "DT_EXPORTER_SPAN_EVENTS_LEVEL", "INFO",
            "level of bridged span events other than exceptions", group="bridge"),
)
SETTING_BY_NAME: Final[dict[str, Setting]] = {s.name: s for s in SETTINGS}
#: setting name -> environment variable, for every setting.
ENV_VARS: Final[dict[str, str]] = {s.name: s.env_var for s in SETTINGS}
#: The settings `ExporterConfig` carries (its keyword arguments).
_CONFIG_FIELDS: Final = frozenset(s.name for s in SETTINGS if s.group in ("exporter", "events"))


def environment() -> dict[str, str]:
    """A copy of the whole process environment: for `dt-exporter preflight`, which checks the
    variables another tool (the Collector, Fluent Bit) will read. The library's own settings are
    read through `SETTINGS`."""
    return dict(os.environ)


def read_env(name: str, env: Mapping[str, str] | None = None) -> str | None:
    """Read one environment variable: for modules (bridge, events) that own their settings."""
    value = (os.environ if env is None else env).get(name)
    return None if value is None or value.strip() == "" else value.strip()


def windows_program_data(env: Mapping[str, str] | None = None) -> str | None:
    """`%ProgramData%` (Windows' enrichment files live under it), or None when unset."""
    return read_env("ProgramData", env) or read_env("PROGRAMDATA", env)


def enrichment_enabled(env: Mapping[str, str] | None = None) -> bool:
    """`DT_EXPORTER_ENRICHMENT` (default true): read Dynatrace's enrichment files at all.

    Raises `ConfigError` on a value that is not a boolean."""
    raw = read_env("DT_EXPORTER_ENRICHMENT", env)
    return True if raw is None else parse_bool("DT_EXPORTER_ENRICHMENT", raw)


def parse_bool(setting: str, raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    if not isinstance(raw, str):
        raise ConfigError(setting, "expected true or false")
    lowered = raw.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(setting, "expected true or false")


def parse_endpoint(raw: str | None) -> Endpoint:
    """Normalise DT_ENDPOINT into a base URL and recognise what kind of target it is."""
    if raw is None or raw.strip() == "":
        return Endpoint(ONEAGENT_DEFAULT_ENDPOINT, "oneagent")
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        raise ConfigError("DT_ENDPOINT", "is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("DT_ENDPOINT", "must be an http:// or https:// URL with a host")
    if parts.query or parts.fragment:
        raise ConfigError("DT_ENDPOINT", "must not carry a query string or fragment")
    host = parts.hostname.lower()
    if host.endswith(".apps.dynatrace.com"):
        raise ConfigError(
            "DT_ENDPOINT",
            "the ingest APIs live on {env-id}.live.dynatrace.com, not .apps. (404 otherwise)",
        )
    path = parts.path.rstrip("/")
    kind: EndpointKind | None = None
    for suffix in _API_SUFFIXES:
        if path.endswith(suffix):
            path = path[: -len(suffix)]
            break
    else:
        for suffix in _ONEAGENT_SUFFIXES:
            if path.endswith(suffix):
                if not is_loopback(host):
                    raise ConfigError("DT_ENDPOINT", "OneAgent's local API (/v2/logs/ingest) only "
                                      "listens on localhost; remote targets use /api/v2/...")
                path, kind = path[: -len(suffix)], "oneagent"
                break
    netloc = parts.netloc.rsplit("@", 1)[-1]  # never keep credentials embedded in the URL
    base = f"{parts.scheme}://{netloc}{path}"
    if kind is None:
        kind = _endpoint_kind(host, port, path)
    return Endpoint(base, kind)


def _endpoint_kind(host: str, port: int | None, path: str) -> EndpointKind:
    if port == 14499 and is_loopback(host) and path == "":
        return "oneagent"
    if host.endswith((".live.dynatrace.com", ".dynatracelabs.com")):
        return "saas"
    if port == 9999:
        return "activegate"
    if path.startswith("/e/"):
        return "managed"
    return "custom"


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Resolver:
    """kwargs > environment > default, one setting at a time, with errors that name the setting."""

    def __init__(
        self, env: Mapping[str, str], overrides: Mapping[str, Any],
        known: frozenset[str] = _CONFIG_FIELDS,
    ) -> None:
        unknown = set(overrides) - known
        if unknown:
            raise ConfigError(", ".join(sorted(unknown)), "unknown setting")
        self._env = env
        self._overrides = overrides
        self.sources: dict[str, SettingSource] = {}

    def _raw(self, name: str) -> Any:
        if name in self._overrides and self._overrides[name] is not None:
            self.sources[name] = "argument"
            return self._overrides[name]
        value = read_env(ENV_VARS[name], self._env)
        self.sources[name] = "default" if value is None else "environment"
        return value

    def _number(self, name: str, cast: type[int] | type[float], low: float, high: float) -> Any:
        raw = self._raw(name)
        if raw is None:
            return None
        problem = f"expected a number from {low} to {high}"
        fractional = isinstance(raw, float) and not raw.is_integer()
        if isinstance(raw, bool) or (cast is int and fractional):
            raise ConfigError(ENV_VARS[name], problem)
        try:
            value = cast(raw)
        except (TypeError, ValueError):
            raise ConfigError(ENV_VARS[name], problem) from None
        if not low <= value <= high:
            raise ConfigError(ENV_VARS[name], f"must be from {low} to {high}")
        return value

    def _choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        value = str(raw).strip().lower()
        if value not in choices:
            raise ConfigError(ENV_VARS[name], f"expected one of {', '.join(choices)}")
        return value

    def resolve(self) -> ExporterConfig:
        raw_endpoint = self._raw("endpoint")
        endpoint = (
            raw_endpoint if isinstance(raw_endpoint, Endpoint) else parse_endpoint(raw_endpoint)
        )
        token = self._token()
        values: dict[str, Any] = {"endpoint": endpoint, "token": token}
        values["protocol"] = self._choice("protocol", ("json", "otlp"))
        values["compression"] = self._choice("compression", ("gzip", "none"))
        values["gzip_level"] = self._number("gzip_level", int, 1, 9)
        values["timeout_s"] = self._number("timeout_s", float, 0.05, 600)
        values["ca_bundle"] = self._path("ca_bundle")
        for flag in ("insecure_skip_tls_verify", "allow_insecure_http"):
            raw = self._raw(flag)
            values[flag] = None if raw is None else parse_bool(ENV_VARS[flag], raw)
        profile = self._raw("limits")
        if isinstance(profile, LimitProfile):
            values["limits"] = profile
        elif profile is not None:
            values["limits"] = PROFILES[self._choice("limits", tuple(PROFILES)) or "grail"]
        values["max_request_bytes"] = self._number(
            "max_request_bytes", int, 1024, LOGS_MAX_REQUEST_BYTES
        )
        values["max_records_per_request"] = self._number(
            "max_records_per_request", int, 1, LOGS_MAX_RECORDS_PER_REQUEST
        )
        values["max_queue_bytes"] = self._number("max_queue_bytes", int, 1024, 2**40)
        values["retry_max_elapsed_s"] = self._number("retry_max_elapsed_s", float, 0, 86_400)
        values["backoff_initial_s"] = self._number("backoff_initial_s", float, 0.001, 3600)
        values["backoff_max_s"] = self._number("backoff_max_s", float, 0.001, 3600)
        values["shutdown_timeout_s"] = self._number("shutdown_timeout_s", float, 0, 600)
        values["structure"] = self._choice("structure", ("raw", "flattened"))
        values["spool_dir"] = self._raw("spool_dir")
        values["spool_max_bytes"] = self._number("spool_max_bytes", int, 1024, 2**44)
        values["proxy"] = resolve_proxies(self._env, self._raw("proxy"))
        if values["proxy"] is not DIRECT and self.sources["proxy"] == "default":
            self.sources["proxy"] = "environment"  # HTTPS_PROXY and friends
        values["event_routes"] = self._routes()
        values["events_compression"] = self._choice("events_compression", ("gzip", "none"))
        config = ExporterConfig(**{k: v for k, v in values.items() if v is not None},
                                sources=MappingProxyType(self.sources))
        return _check(config, explicit_compression=values["compression"] is not None,
                      explicit_request_bytes=values["max_request_bytes"] is not None)

    def _token(self) -> Secret | None:
        raw = self._raw("token")
        if raw is None:
            return None
        value = raw.reveal() if isinstance(raw, Secret) else str(raw).strip()
        for scheme in ("Api-Token ", "Bearer "):
            if value.startswith(scheme):
                value = value[len(scheme):].strip()
        if not value or any(ch.isspace() or ord(ch) < 32 for ch in value):
            raise ConfigError("DT_API_TOKEN", "must be one token with no spaces or line breaks")
        return Secret(value)

    def _routes(self) -> EventRoutes | None:
        raw = self._raw("event_routes")
        if raw is None or isinstance(raw, EventRoutes):
            return raw
        if not isinstance(raw, (str, Mapping)):
            raise ConfigError(ROUTES_ENV_VAR, "expected pattern=destination rules")
        return EventRoutes.parse(raw)

    def _path(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        if not os.path.isfile(raw):
            raise ConfigError(ENV_VARS[name], "no such file")
        return str(raw)


def _check(
    config: ExporterConfig, *, explicit_compression: bool, explicit_request_bytes: bool
) -> ExporterConfig:
    """Cross-setting rules: what no single setting can tell on its own."""
    endpoint = config.endpoint
    if endpoint.is_oneagent:
        if config.protocol == "otlp":
            raise ConfigError(
                "DT_EXPORTER_PROTOCOL",
                "otlp needs DT_ENDPOINT: the OneAgent local endpoint takes no OTLP logs",
            )
        if explicit_compression and config.compression == "gzip":
            raise ConfigError(
                "DT_EXPORTER_COMPRESSION", "the OneAgent local endpoint refuses Content-Encoding"
            )
        config = replace(config, compression="none")
        if config.events_compression == "gzip":
            raise ConfigError("DT_EXPORTER_EVENTS_COMPRESSION",
                              "the OneAgent local endpoint refuses Content-Encoding")
    elif config.token is None:
        raise ConfigError("DT_API_TOKEN", f"required for a {endpoint.kind} endpoint")
    host = urlsplit(endpoint.base_url).hostname or ""
    if (
        endpoint.base_url.startswith("http://")
        and config.token is not None
        and not is_loopback(host)
        and not config.allow_insecure_http
    ):
        raise ConfigError(
            "DT_ENDPOINT",
            "refusing to send the token over plain http:// to a non-loopback host; use https:// "
            "or set DT_EXPORTER_ALLOW_INSECURE_HTTP=true",
        )
    if config.backoff_initial_s > config.backoff_max_s:
        raise ConfigError("DT_EXPORTER_BACKOFF_INITIAL", "must not exceed DT_EXPORTER_BACKOFF_MAX")
    if config.protocol == "otlp" and not explicit_request_bytes:
        config = replace(config, max_request_bytes=DEFAULT_OTLP_REQUEST_BYTES)
    return config


# -- event routing rules (DT_EXPORTER_EVENT_ROUTES) --------------------------------------------

ROUTES_ENV_VAR: Final = "DT_EXPORTER_EVENT_ROUTES"
RouteTarget = Literal["events", "security"]
#: The documented `eventType` values of the Events API v2
#: (https://docs.dynatrace.com/docs/dynatrace-api/environment-api/events-v2/post-event);
#: `event_model.EventType` has one member per name (a unit test holds them equal).
EVENT_TYPES: Final = (
    "AVAILABILITY_EVENT", "CUSTOM_ALERT", "CUSTOM_ANNOTATION", "CUSTOM_CONFIGURATION",
    "CUSTOM_DEPLOYMENT", "CUSTOM_INFO", "ERROR_EVENT", "MARKED_FOR_TERMINATION",
    "PERFORMANCE_EVENT", "RESOURCE_CONTENTION_EVENT", "WARNING",
)
_GLOB_CHARS: Final = frozenset("*?[")
#: A custom OpenPipeline endpoint name is one URL path segment.
_ENDPOINT_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]*")


def check_endpoint_name(name: str, setting: str = "endpoint_name") -> str:
    """`name` if it can be a custom security-events endpoint (one path segment); else
    `ConfigError`."""
    if not isinstance(name, str) or not _ENDPOINT_NAME.fullmatch(name):
        raise ConfigError(
            setting, f"{name!r} is not an endpoint name (letters, digits, '.', '_', '~', '-')"
        )
    return name


@dataclass(frozen=True, slots=True)
class EventRoute:
    """Where records whose event name matches `pattern` (a name or a glob) go instead of log
    ingest: the Events API as `event_type` (one of `EVENT_TYPES`; an `EventType` is taken too),
    or a custom security-events endpoint."""

    pattern: str
    target: RouteTarget
    event_type: str = "CUSTOM_INFO"
    endpoint_name: str = ""

    def __post_init__(self) -> None:
        name = str(getattr(self.event_type, "value", self.event_type))  # an EventType member
        object.__setattr__(self, "event_type", name)

    @property
    def is_glob(self) -> bool:
        return not _GLOB_CHARS.isdisjoint(self.pattern)

    def matches(self, event_name: str) -> bool:
        if self.is_glob:
            return fnmatch.fnmatchcase(event_name, self.pattern)
        return event_name == self.pattern

    @property
    def destination(self) -> str:
        """`events:<TYPE>` or `security:<endpoint>`, as written in the setting."""
        if self.target == "events":
            return f"events:{self.event_type}"
        return f"security:{self.endpoint_name}"


@dataclass(frozen=True, slots=True)
class EventRoutes:
    """The routing rules of `EventRoutingExporter` (setting `event_routes`,
    `DT_EXPORTER_EVENT_ROUTES`): comma-separated `pattern=destination`, e.g.
    `deployment=events:CUSTOM_DEPLOYMENT,finding.*=security:my-scanner`.

    Destinations: `events` (CUSTOM_INFO), `events:<EVENT_TYPE>`, `security:<endpoint name>`.
    An exact name wins over a glob; globs are tried in the order written.
    """

    routes: tuple[EventRoute, ...] = ()

    @classmethod
    def from_env(
        cls, env: Mapping[str, str] | None = None, *,
        routes: str | Mapping[str, str] | None = None,
    ) -> EventRoutes:
        """`routes` if given, else the `event_routes` setting from `env` (default: the process
        environment), as `ExporterConfig.from_env` reads it."""
        raw = routes if routes is not None else read_env(ROUTES_ENV_VAR, env)
        return cls.parse(raw or "")

    @classmethod
    def parse(cls, spec: str | Mapping[str, str]) -> EventRoutes:
        if isinstance(spec, str):
            pairs = []
            for item in spec.split(","):
                if not item.strip():
                    continue
                pattern, sep, destination = item.partition("=")
                if not sep:
                    raise ConfigError(ROUTES_ENV_VAR, f"{item.strip()!r}: expected "
                                      "pattern=events:<TYPE> or pattern=security:<endpoint>")
                pairs.append((pattern, destination))
        else:
            pairs = list(spec.items())
        routes: list[EventRoute] = []
        for pattern, destination in pairs:
            route = _route(pattern.strip(), destination.strip())
            if any(known.pattern == route.pattern for known in routes):
                raise ConfigError(ROUTES_ENV_VAR, f"{route.pattern!r} is routed twice")
            routes.append(route)
        return cls(tuple(routes))

    def route_for(self, event_name: str | None) -> EventRoute | None:
        """The rule for `event_name`: its exact rule, else the first matching glob, else None."""
        if not event_name:
            return None
        exact = next((r for r in self.routes if not r.is_glob and r.pattern == event_name), None)
        if exact is not None:
            return exact
        return next((r for r in self.routes if r.is_glob and r.matches(event_name)), None)

    def __str__(self) -> str:
        return ",".join(f"{r.pattern}={r.destination}" for r in self.routes)


def _route(pattern: str, destination: str) -> EventRoute:
    if not pattern:
        raise ConfigError(ROUTES_ENV_VAR, f"an empty event name is routed to {destination!r}")
    target, _, argument = destination.partition(":")
    target, argument = target.strip().lower(), argument.strip()
    if target == "events":
        event_type = argument.upper() or "CUSTOM_INFO"
        if event_type not in EVENT_TYPES:
            raise ConfigError(ROUTES_ENV_VAR, f"{pattern}: unknown event type {argument!r}; "
                              f"expected one of {', '.join(EVENT_TYPES)}")
        return EventRoute(pattern, "events", event_type=event_type)
    if target == "security":
        if not argument:
            raise ConfigError(ROUTES_ENV_VAR, f"{pattern}: security needs an endpoint name, "
                              "e.g. security:my-scanner")
        return EventRoute(pattern, "security",
                          endpoint_name=check_endpoint_name(argument, ROUTES_ENV_VAR))
    raise ConfigError(ROUTES_ENV_VAR, f"{pattern}: unknown destination {destination!r}; "
                      "expected events:<TYPE> or security:<endpoint>")


# -- the span-event bridge ---------------------------------------------------------------------

SpanEventLevel = Literal["DEBUG", "INFO", "WARN", "ERROR"]
#: `BridgeConfig` field (its keyword argument) -> the name of its row in `SETTINGS`.
BRIDGE_SETTINGS: Final[dict[str, str]] = {
    "include": "span_events_include",
    "exclude": "span_events_exclude",
    "level": "span_events_level",
}
BRIDGE_ENV_VARS: Final[dict[str, str]] = {k: ENV_VARS[v] for k, v in BRIDGE_SETTINGS.items()}


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """Settings of the span-event bridge. Empty `include` means every event name."""

    include: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    level: SpanEventLevel = "INFO"
    #: where each field came from (see `source`); not part of the value
    sources: Mapping[str, SettingSource] = field(
        default_factory=lambda: MappingProxyType({}), compare=False, repr=False
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> BridgeConfig:
        """Keyword overrides (`include`, `exclude`, `level`), then `env` (default `os.environ`),
        then defaults, as `ExporterConfig.from_env` resolves its settings."""
        unknown = set(overrides) - set(BRIDGE_SETTINGS)
        if unknown:
            raise ConfigError(", ".join(sorted(unknown)), "unknown setting")
        resolver = _Resolver(
            os.environ if env is None else env,
            {BRIDGE_SETTINGS[k]: v for k, v in overrides.items()},
            known=frozenset(BRIDGE_SETTINGS.values()),
        )
        values: dict[str, Any] = {}
        for name in ("include", "exclude"):
            raw = resolver._raw(BRIDGE_SETTINGS[name])
            if raw is not None:
                names = raw.split(",") if isinstance(raw, str) else list(raw)
                values[name] = frozenset(str(n).strip() for n in names if str(n).strip())
        raw = resolver._raw("span_events_level")
        if raw is not None:
            level = str(raw).strip().upper()
            level = "WARN" if level == "WARNING" else level
            if level not in ("DEBUG", "INFO", "WARN", "ERROR"):
                raise ConfigError(BRIDGE_ENV_VARS["level"], "expected DEBUG, INFO, WARN or ERROR")
            values["level"] = level
        sources = {field: resolver.sources[row] for field, row in BRIDGE_SETTINGS.items()}
        return cls(**values, sources=MappingProxyType(sources))

    def source(self, name: str) -> SettingSource:
        """Where field `name` (`include`, `exclude`, `level`) came from."""
        return _source(self, name, self.sources.get(name))

    def wants(self, event_name: str) -> bool:
        if event_name in self.exclude:
            return False
        return not self.include or event_name in self.include


def _source(
    config: ExporterConfig | BridgeConfig, name: str, recorded: SettingSource | None
) -> SettingSource:
    value = getattr(config, name)
    spec = next(f for f in fields(config) if f.name == name)
    if spec.default_factory is not MISSING:
        default: Any = spec.default_factory()
    else:
        default = spec.default  # MISSING (the endpoint) equals no value
    if recorded is None:  # built directly, not by from_env
        return "default" if value == default else "argument"
    if recorded != "default":
        return recorded
    return "default" if default is MISSING or value == default else "derived"
