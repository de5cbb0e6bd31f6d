"""ExporterConfig: endpoint parsing, precedence, tokens, cross-setting rules, and no token leaks."""

from __future__ import annotations

import dataclasses
import re
import traceback
from pathlib import Path

import pytest

import dt_exporter
from dt_exporter.config import (
    BRIDGE_SETTINGS,
    SETTINGS,
    BridgeConfig,
    Endpoint,
    EventRoutes,
    ExporterConfig,
    Secret,
    parse_endpoint,
)
from dt_exporter.errors import ConfigError
from dt_exporter.limits import CLASSIC, GRAIL

SAAS = "https://abc12345.live.dynatrace.com"
#: A classic API token's shape: prefix, 24-character public part, 64-character secret part.
CANARY = "dt0c01.CANARY0000000000000000000." + "C" * 64
PLATFORM_TOKEN = "dt0s16.PLATFORM00000000000000000." + "P" * 64


def saas_env(**extra: str) -> dict[str, str]:
    return {"DT_ENDPOINT": SAAS, "DT_API_TOKEN": CANARY, **extra}


def leak_surfaces(exc: BaseException) -> list[str]:
    """Everything a user could see of an exception: str, repr, and the whole chained traceback."""
    return [str(exc), repr(exc), "".join(traceback.format_exception(exc))]


# -- endpoint parsing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "base_url", "kind", "logs_url"),
    [
        (SAAS, SAAS, "saas", SAAS + "/api/v2/logs/ingest"),
        (SAAS + "/", SAAS, "saas", SAAS + "/api/v2/logs/ingest"),
        (f"  {SAAS}  ", SAAS, "saas", SAAS + "/api/v2/logs/ingest"),
        (SAAS + "/api/v2/logs/ingest", SAAS, "saas", SAAS + "/api/v2/logs/ingest"),
        (SAAS + "/api/v2/logs/ingest/", SAAS, "saas", SAAS + "/api/v2/logs/ingest"),
        (SAAS + "/api/v2/otlp", SAAS, "saas", SAAS + "/api/v2/logs/ingest"),
        (SAAS + "/api/v2/otlp/v1/logs", SAAS, "saas", SAAS + "/api/v2/logs/ingest"),
        (
            "https://dt.example.com/e/abc123",
            "https://dt.example.com/e/abc123",
            "managed",
            "https://dt.example.com/e/abc123/api/v2/logs/ingest",
        ),
        (
            "https://dt.example.com/e/abc123/api/v2/logs/ingest",
            "https://dt.example.com/e/abc123",
            "managed",
            "https://dt.example.com/e/abc123/api/v2/logs/ingest",
        ),
        (
            "https://ag:9999/e/abc123",
            "https://ag:9999/e/abc123",
            "activegate",
            "https://ag:9999/e/abc123/api/v2/logs/ingest",
        ),
        (
            "https://ag.example.com:9999/e/abc123/api/v2/otlp",
            "https://ag.example.com:9999/e/abc123",
            "activegate",
            "https://ag.example.com:9999/e/abc123/api/v2/logs/ingest",
        ),
        (
            "http://localhost:14499",
            "http://localhost:14499",
            "oneagent",
            "http://localhost:14499/v2/logs/ingest",
        ),
        (
            "http://127.0.0.1:14499/v2/logs/ingest",
            "http://127.0.0.1:14499",
            "oneagent",
            "http://127.0.0.1:14499/v2/logs/ingest",
        ),
        (
            "http://127.0.0.1:51234/v2/logs/ingest",
            "http://127.0.0.1:51234",
            "oneagent",
            "http://127.0.0.1:51234/v2/logs/ingest",
        ),
        (
            "https://user:secret@abc12345.live.dynatrace.com",
            SAAS,
            "saas",
            SAAS + "/api/v2/logs/ingest",
        ),
        (
            f"https://{CANARY}@dt.example.com/e/abc123",
            "https://dt.example.com/e/abc123",
            "managed",
            "https://dt.example.com/e/abc123/api/v2/logs/ingest",
        ),
        (
            "https://logs-proxy.example.com",
            "https://logs-proxy.example.com",
            "custom",
            "https://logs-proxy.example.com/api/v2/logs/ingest",
        ),
    ],
)
def test_endpoint_is_normalised_to_base_url_and_kind(
    raw: str, base_url: str, kind: str, logs_url: str
) -> None:
    """DT_ENDPOINT loses pasted API suffixes and credentials; its deployment kind is recognised."""
    endpoint = parse_endpoint(raw)
    assert endpoint.base_url == base_url
    assert endpoint.kind == kind
    assert endpoint.logs_url == logs_url


@pytest.mark.parametrize(
    "raw",
    [
        "https://abc12345.apps.dynatrace.com",
        "https://abc12345.apps.dynatrace.com/api/v2/logs/ingest",
        "ftp://abc12345.live.dynatrace.com",
        "abc12345.live.dynatrace.com",
        "garbage",
        "https://",
        "https://host:notaport",
        "https://host:99999",
        "http://[::1",
        SAAS + "?Api-Token=x",
        SAAS + "#fragment",
    ],
)
def test_bad_endpoint_is_refused_naming_dt_endpoint(raw: str) -> None:
    """A URL that cannot reach an ingest API raises ConfigError naming DT_ENDPOINT."""
    with pytest.raises(ConfigError) as caught:
        ExporterConfig.from_env(env={"DT_ENDPOINT": raw, "DT_API_TOKEN": CANARY})
    assert caught.value.setting == "DT_ENDPOINT"
    assert "DT_ENDPOINT" in str(caught.value)


def test_unset_endpoint_means_the_local_oneagent() -> None:
    """With no DT_ENDPOINT the target is OneAgent on localhost:14499, tokenless, uncompressed."""
    config = ExporterConfig.from_env(env={})
    assert config.endpoint == Endpoint("http://localhost:14499", "oneagent")
    assert config.logs_url == "http://localhost:14499/v2/logs/ingest"
    assert config.token is None
    assert config.authorization is None
    assert config.compression == "none"


# -- precedence ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "variable", "env_value", "from_env", "kwarg", "default"),
    [
        ("timeout_s", "DT_EXPORTER_TIMEOUT", "5", 5.0, 7.5, 10.0),
        ("protocol", "DT_EXPORTER_PROTOCOL", "otlp", "otlp", "json", "json"),
        ("compression", "DT_EXPORTER_COMPRESSION", "none", "none", "gzip", "gzip"),
        ("gzip_level", "DT_EXPORTER_GZIP_LEVEL", "6", 6, 9, 1),
        ("limits", "DT_EXPORTER_LIMIT_PROFILE", "classic", CLASSIC, GRAIL, GRAIL),
        ("max_records_per_request", "DT_EXPORTER_MAX_RECORDS_PER_REQUEST", "100", 100, 7, 50_000),
        ("max_queue_bytes", "DT_EXPORTER_MAX_QUEUE_BYTES", "2048", 2048, 4096, 64 * 1024 * 1024),
        ("backoff_max_s", "DT_EXPORTER_BACKOFF_MAX", "20", 20.0, 25.0, 30.0),
        ("shutdown_timeout_s", "DT_EXPORTER_SHUTDOWN_TIMEOUT", "1.5", 1.5, 0.0, 5.0),
        ("structure", "DT_EXPORTER_STRUCTURE", "RAW", "raw", "flattened", None),
        (
            "insecure_skip_tls_verify",
            "DT_EXPORTER_INSECURE_SKIP_TLS_VERIFY",
            "yes",
            True,
            False,
            False,
        ),
    ],
)
def test_keyword_beats_environment_beats_default(
    setting: str, variable: str, env_value: str, from_env: object, kwarg: object, default: object
) -> None:
    """Each setting resolves from kwargs first, then its DT_* variable, then its default."""
    assert getattr(ExporterConfig.from_env(env=saas_env()), setting) == default
    assert getattr(ExporterConfig.from_env(env=saas_env(**{variable: env_value})), setting) == (
        from_env
    )
    overridden = ExporterConfig.from_env(env=saas_env(**{variable: env_value}), **{setting: kwarg})
    assert getattr(overridden, setting) == kwarg


def test_none_keyword_falls_back_to_the_environment() -> None:
    """A keyword passed as None does not hide the environment variable."""
    config = ExporterConfig.from_env(env=saas_env(DT_EXPORTER_TIMEOUT="3"), timeout_s=None)
    assert config.timeout_s == 3.0


def test_endpoint_keyword_beats_environment() -> None:
    """An endpoint keyword (string or Endpoint) wins over DT_ENDPOINT."""
    env = saas_env()
    by_string = ExporterConfig.from_env(env=env, endpoint="https://dt.example.com/e/abc123")
    assert by_string.endpoint == Endpoint("https://dt.example.com/e/abc123", "managed")
    given = Endpoint("https://ag:9999/e/abc123", "activegate")
    assert ExporterConfig.from_env(env=env, endpoint=given).endpoint is given


def test_blank_environment_variable_counts_as_unset() -> None:
    """An empty or whitespace-only DT_* variable leaves the default in place."""
    env = saas_env(DT_EXPORTER_TIMEOUT="  ", DT_EXPORTER_PROTOCOL="")
    config = ExporterConfig.from_env(env=env)
    assert config.timeout_s == 10.0
    assert config.protocol == "json"


def test_otlp_protocol_uses_the_otlp_url_and_its_smaller_request_limit() -> None:
    """protocol=otlp posts to /api/v2/otlp/v1/logs with a 2 MB default, unless a size is set."""
    config = ExporterConfig.from_env(env=saas_env(DT_EXPORTER_PROTOCOL="otlp"))
    assert config.logs_url == SAAS + "/api/v2/otlp/v1/logs"
    assert config.max_request_bytes == 2_000_000
    explicit = ExporterConfig.from_env(
        env=saas_env(DT_EXPORTER_PROTOCOL="otlp", DT_EXPORTER_MAX_REQUEST_BYTES="5000000")
    )
    assert explicit.max_request_bytes == 5_000_000


def test_structure_is_sent_as_a_query_parameter() -> None:
    """DT_EXPORTER_STRUCTURE becomes ?structure=... on the logs URL."""
    config = ExporterConfig.from_env(env=saas_env(DT_EXPORTER_STRUCTURE="flattened"))
    assert config.logs_url == SAAS + "/api/v2/logs/ingest?structure=flattened"


# -- tokens --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "authorization"),
    [
        (CANARY, f"Api-Token {CANARY}"),
        (f"  {CANARY}\n", f"Api-Token {CANARY}"),
        (f"Api-Token {CANARY}", f"Api-Token {CANARY}"),
        (f"Api-Token   {CANARY}", f"Api-Token {CANARY}"),
        (PLATFORM_TOKEN, f"Bearer {PLATFORM_TOKEN}"),
        (f"Bearer {PLATFORM_TOKEN}", f"Bearer {PLATFORM_TOKEN}"),
    ],
)
def test_token_kind_picks_the_authorization_scheme(raw: str, authorization: str) -> None:
    """dt0s16. platform tokens go as Bearer, others as Api-Token; a pasted scheme is stripped."""
    config = ExporterConfig.from_env(env={"DT_ENDPOINT": SAAS, "DT_API_TOKEN": raw})
    assert config.authorization == authorization


def test_token_may_be_given_as_a_secret_keyword() -> None:
    """A Secret passed as token= is used as is."""
    config = ExporterConfig.from_env(env={"DT_ENDPOINT": SAAS}, token=Secret(CANARY))
    assert config.token == Secret(CANARY)
    assert config.authorization == f"Api-Token {CANARY}"


@pytest.mark.parametrize(
    "endpoint",
    [
        SAAS,
        "https://dt.example.com/e/abc123",
        "https://ag:9999/e/abc123",
        "https://logs-proxy.example.com",
    ],
)
def test_token_is_required_except_for_oneagent(endpoint: str) -> None:
    """Every endpoint other than the local OneAgent needs DT_API_TOKEN."""
    with pytest.raises(ConfigError) as caught:
        ExporterConfig.from_env(env={"DT_ENDPOINT": endpoint})
    assert caught.value.setting == "DT_API_TOKEN"


@pytest.mark.parametrize(
    ("endpoint", "allow", "refused"),
    [
        ("http://dynatrace.internal:8080", None, True),
        ("http://10.0.0.5/e/abc123", None, True),
        ("http://dynatrace.internal:8080", "false", True),
        ("http://dynatrace.internal:8080", "true", False),
        ("http://localhost:8080", None, False),
        ("http://127.0.0.1:8080", None, False),
        ("http://[::1]:8080", None, False),
        ("https://dynatrace.internal:8080", None, False),
    ],
)
def test_token_over_plain_http_only_to_loopback_or_when_allowed(
    endpoint: str, allow: str | None, refused: bool
) -> None:
    """The token never crosses the network in clear text unless the user opts in."""
    env = {"DT_ENDPOINT": endpoint, "DT_API_TOKEN": CANARY}
    if allow is not None:
        env["DT_EXPORTER_ALLOW_INSECURE_HTTP"] = allow
    if refused:
        with pytest.raises(ConfigError) as caught:
            ExporterConfig.from_env(env=env)
        assert caught.value.setting == "DT_ENDPOINT"
        assert all(CANARY not in shown for shown in leak_surfaces(caught.value))
    else:
        assert ExporterConfig.from_env(env=env).token == Secret(CANARY)


def test_allow_insecure_http_keyword_permits_plain_http() -> None:
    """allow_insecure_http=True as a keyword lifts the http:// refusal."""
    config = ExporterConfig.from_env(
        env={"DT_ENDPOINT": "http://dynatrace.internal:8080", "DT_API_TOKEN": CANARY},
        allow_insecure_http=True,
    )
    assert config.allow_insecure_http is True


# -- OneAgent ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "kwargs", "refused_setting"),
    [
        ({}, {}, None),
        ({"DT_EXPORTER_COMPRESSION": "none"}, {}, None),
        ({"DT_EXPORTER_COMPRESSION": "gzip"}, {}, "DT_EXPORTER_COMPRESSION"),
        ({}, {"compression": "gzip"}, "DT_EXPORTER_COMPRESSION"),
        ({"DT_EXPORTER_PROTOCOL": "otlp"}, {}, "DT_EXPORTER_PROTOCOL"),
        ({}, {"protocol": "otlp"}, "DT_EXPORTER_PROTOCOL"),
    ],
)
def test_oneagent_takes_uncompressed_json_only(
    extra: dict[str, str], kwargs: dict[str, str], refused_setting: str | None
) -> None:
    """OneAgent's local API gets no Content-Encoding and no OTLP: explicit requests are refused."""
    env = {"DT_ENDPOINT": "http://localhost:14499", **extra}
    if refused_setting is None:
        config = ExporterConfig.from_env(env=env, **kwargs)
        assert config.compression == "none"
        assert config.protocol == "json"
    else:
        with pytest.raises(ConfigError) as caught:
            ExporterConfig.from_env(env=env, **kwargs)
        assert caught.value.setting == refused_setting


# -- invalid values, and the token never shows -----------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DT_ENDPOINT", "ftp://abc12345.live.dynatrace.com"),
        ("DT_API_TOKEN", f"{CANARY} trailing-word"),
        ("DT_API_TOKEN", f"{CANARY}\nsecond-line"),
        ("DT_EXPORTER_PROTOCOL", "grpc"),
        ("DT_EXPORTER_COMPRESSION", "brotli"),
        ("DT_EXPORTER_GZIP_LEVEL", "0"),
        ("DT_EXPORTER_GZIP_LEVEL", "10"),
        ("DT_EXPORTER_GZIP_LEVEL", "fast"),
        ("DT_EXPORTER_TIMEOUT", "0"),
        ("DT_EXPORTER_TIMEOUT", "-1"),
        ("DT_EXPORTER_TIMEOUT", "nan"),
        ("DT_EXPORTER_TIMEOUT", "ten"),
        ("DT_EXPORTER_CA_BUNDLE", "/nonexistent/dir/ca.pem"),
        ("DT_EXPORTER_INSECURE_SKIP_TLS_VERIFY", "maybe"),
        ("DT_EXPORTER_ALLOW_INSECURE_HTTP", "2"),
        ("DT_EXPORTER_LIMIT_PROFILE", "premium"),
        ("DT_EXPORTER_MAX_REQUEST_BYTES", "20000000"),
        ("DT_EXPORTER_MAX_REQUEST_BYTES", "100"),
        ("DT_EXPORTER_MAX_RECORDS_PER_REQUEST", "0"),
        ("DT_EXPORTER_MAX_RECORDS_PER_REQUEST", "50001"),
        ("DT_EXPORTER_MAX_QUEUE_BYTES", "1"),
        ("DT_EXPORTER_RETRY_MAX_ELAPSED", "-1"),
        ("DT_EXPORTER_BACKOFF_INITIAL", "0"),
        ("DT_EXPORTER_BACKOFF_INITIAL", "60"),  # above the default 30 s maximum
        ("DT_EXPORTER_BACKOFF_MAX", "4000"),
        ("DT_EXPORTER_SHUTDOWN_TIMEOUT", "601"),
        ("DT_EXPORTER_STRUCTURE", "nested"),
        ("DT_EXPORTER_SPOOL_MAX_BYTES", "10"),
    ],
)
def test_invalid_value_raises_config_error_naming_the_variable(variable: str, value: str) -> None:
    """Every invalid DT_* value raises ConfigError that names the variable and hides the token."""
    with pytest.raises(ConfigError) as caught:
        ExporterConfig.from_env(env=saas_env(**{variable: value}))
    assert caught.value.setting == variable
    assert variable in str(caught.value)
    for shown in leak_surfaces(caught.value):
        assert CANARY not in shown


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DT_ENDPOINT", f"ftp://{CANARY}.example.com"),
        ("DT_ENDPOINT", f"{SAAS}?token={CANARY}"),
        ("DT_ENDPOINT", f"https://{CANARY}.apps.dynatrace.com"),
        ("DT_ENDPOINT", f"{SAAS}:{CANARY}"),
        ("DT_API_TOKEN", f"{CANARY} {CANARY}"),
        ("DT_EXPORTER_PROTOCOL", CANARY),
        ("DT_EXPORTER_GZIP_LEVEL", CANARY),
        ("DT_EXPORTER_TIMEOUT", CANARY),
        ("DT_EXPORTER_CA_BUNDLE", f"/nonexistent/{CANARY}"),
        ("DT_EXPORTER_ALLOW_INSECURE_HTTP", CANARY),
        ("DT_EXPORTER_LIMIT_PROFILE", CANARY),
        ("DT_EXPORTER_MAX_QUEUE_BYTES", CANARY),
        ("DT_EXPORTER_STRUCTURE", CANARY),
    ],
)
def test_invalid_value_is_never_echoed(variable: str, value: str) -> None:
    """A token pasted into the wrong variable never shows in the error, repr or traceback."""
    with pytest.raises(ConfigError) as caught:
        ExporterConfig.from_env(env=saas_env(**{variable: value}))
    assert caught.value.setting == variable
    for shown in leak_surfaces(caught.value):
        assert CANARY not in shown


@pytest.mark.parametrize(
    ("setting", "value", "variable"),
    [
        ("allow_insecure_http", 2, "DT_EXPORTER_ALLOW_INSECURE_HTTP"),
        ("insecure_skip_tls_verify", ["yes"], "DT_EXPORTER_INSECURE_SKIP_TLS_VERIFY"),
        ("gzip_level", 1.5, "DT_EXPORTER_GZIP_LEVEL"),
        ("timeout_s", "soon", "DT_EXPORTER_TIMEOUT"),
        ("timeout_s", [1], "DT_EXPORTER_TIMEOUT"),
        ("protocol", 3, "DT_EXPORTER_PROTOCOL"),
        ("limits", "premium", "DT_EXPORTER_LIMIT_PROFILE"),
    ],
)
def test_invalid_keyword_value_raises_config_error(
    setting: str, value: object, variable: str
) -> None:
    """A keyword of the wrong type or range raises ConfigError naming the variable, nothing else."""
    with pytest.raises(ConfigError) as caught:
        ExporterConfig.from_env(env=saas_env(), **{setting: value})
    assert caught.value.setting == variable


def test_unknown_keyword_is_rejected() -> None:
    """A misspelt setting raises ConfigError naming it instead of being ignored."""
    with pytest.raises(ConfigError) as caught:
        ExporterConfig.from_env(env=saas_env(), tokn=CANARY)
    assert caught.value.setting == "tokn"
    assert CANARY not in str(caught.value)


def test_config_and_secret_never_show_the_token() -> None:
    """repr/str of a config and of its Secret keep the token hidden, while it stays usable."""
    config = ExporterConfig.from_env(
        env={
            "DT_ENDPOINT": f"https://user:{CANARY}@dt.example.com/e/abc123",
            "DT_API_TOKEN": CANARY,
        }
    )
    assert config.token is not None
    assert config.token.reveal() == CANARY
    for shown in (
        repr(config),
        str(config),
        f"{config}",
        repr(config.token),
        str(config.token),
        repr(Secret(CANARY)),
        str(Secret(CANARY)),
        repr(config.endpoint),
    ):
        assert CANARY not in shown


# -- the one settings table --------------------------------------------------------------------

PACKAGE = Path(dt_exporter.__file__).parent
README = PACKAGE.parent / "README.md"


def test_every_config_field_is_a_row_of_the_table_and_every_row_a_setting() -> None:
    """ExporterConfig's and BridgeConfig's fields are exactly the table's exporter/events and
    bridge rows; variables are unique."""
    config_fields = {f.name for f in dataclasses.fields(ExporterConfig) if f.name != "sources"}
    bridge_fields = {f.name for f in dataclasses.fields(BridgeConfig) if f.name != "sources"}
    assert config_fields == {s.name for s in SETTINGS if s.group in ("exporter", "events")}
    assert set(BRIDGE_SETTINGS) == bridge_fields
    assert set(BRIDGE_SETTINGS.values()) == {s.name for s in SETTINGS if s.group == "bridge"}
    variables = [s.env_var for s in SETTINGS]
    assert len(set(variables)) == len(variables)
    assert all(v.startswith("DT_") for v in variables)


def readme_configuration_rows() -> list[list[str]]:
    section = README.read_text(encoding="utf-8").split("\n## Configuration\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `DT_")]
    return [[cell.strip().replace("`", "") for cell in row.strip("|").split(" | ")]
            for row in rows]


def test_the_readme_lists_every_setting_in_order_with_its_default() -> None:
    """The README's configuration table has one row per setting, in the table's order, whose
    default column says what `Setting.default` says."""
    rows = readme_configuration_rows()
    assert [row[0] for row in rows] == [s.env_var for s in SETTINGS]
    for row, setting in zip(rows, SETTINGS, strict=True):
        assert row[2] == setting.default, setting.env_var


def test_only_config_reads_the_environment() -> None:
    """No module of the package but config.py touches os.environ or getenv."""
    readers = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
        if re.search(r"os\.environ|getenv|environb", path.read_text(encoding="utf-8"))
    )
    assert readers == ["config.py"]


def test_sources_say_argument_environment_default_or_derived() -> None:
    """A keyword is `argument`, a variable `environment`, neither `default`; a default another
    setting changed (OneAgent: no compression) is `derived`."""
    config = ExporterConfig.from_env({"DT_EXPORTER_GZIP_LEVEL": "3"}, timeout_s=2)
    assert config.source("timeout_s") == "argument"
    assert config.source("gzip_level") == "environment"
    assert config.source("endpoint") == "default"
    assert config.source("max_queue_bytes") == "default"
    assert config.source("compression") == "derived"
    otlp = ExporterConfig.from_env(saas_env(DT_EXPORTER_PROTOCOL="otlp"))
    assert otlp.source("max_request_bytes") == "derived"
    assert otlp.source("token") == "environment"


def test_sources_are_not_part_of_the_value() -> None:
    """The same settings from a keyword or a variable give equal configs with equal hashes."""
    by_env = ExporterConfig.from_env(saas_env(DT_EXPORTER_GZIP_LEVEL="3"))
    by_keyword = ExporterConfig.from_env(saas_env(), gzip_level=3)
    assert by_env == by_keyword and hash(by_env) == hash(by_keyword)
    assert "sources" not in repr(by_env)


def test_a_config_built_directly_reports_argument_or_default() -> None:
    """Without from_env, a field that differs from its default counts as an argument."""
    config = ExporterConfig(Endpoint(SAAS, "saas"), gzip_level=4)
    assert config.source("gzip_level") == "argument"
    assert config.source("timeout_s") == "default"


def test_event_routes_come_from_the_variable_or_a_keyword() -> None:
    """DT_EXPORTER_EVENT_ROUTES parses into rules; a string, a mapping or rules as keyword win."""
    env = saas_env(DT_EXPORTER_EVENT_ROUTES="deployment=events:custom_deployment")
    config = ExporterConfig.from_env(env)
    assert str(config.event_routes) == "deployment=events:CUSTOM_DEPLOYMENT"
    assert config.source("event_routes") == "environment"
    rules = EventRoutes.parse("x=security:scan")
    for keyword in ("x=security:scan", {"x": "security:scan"}, rules):
        assert ExporterConfig.from_env(env, event_routes=keyword).event_routes == rules
    assert ExporterConfig.from_env(saas_env()).event_routes == EventRoutes()


@pytest.mark.parametrize(
    "spec", ["deployment", "a=events:NOPE", "a=security:", "a=events,a=events", "=events"])
def test_bad_event_routes_raise_naming_the_variable(spec: str) -> None:
    """A malformed DT_EXPORTER_EVENT_ROUTES is a ConfigError naming that variable."""
    with pytest.raises(ConfigError, match="DT_EXPORTER_EVENT_ROUTES"):
        ExporterConfig.from_env(saas_env(DT_EXPORTER_EVENT_ROUTES=spec))


def test_events_gzip_is_refused_for_oneagent() -> None:
    """OneAgent refuses Content-Encoding, for events as for logs."""
    with pytest.raises(ConfigError, match="DT_EXPORTER_EVENTS_COMPRESSION"):
        ExporterConfig.from_env({"DT_EXPORTER_EVENTS_COMPRESSION": "gzip"})


def test_bridge_settings_resolve_through_the_table() -> None:
    """BridgeConfig: keyword > DT_EXPORTER_SPAN_EVENTS_* > default, with sources; bad values and
    unknown keywords raise naming them."""
    env = {"DT_EXPORTER_SPAN_EVENTS_LEVEL": "warning", "DT_EXPORTER_SPAN_EVENTS_INCLUDE": "a, b,"}
    bridge = BridgeConfig.from_env(env, exclude=["c"])
    assert bridge == BridgeConfig(frozenset({"a", "b"}), frozenset({"c"}), "WARN")
    assert (bridge.source("level"), bridge.source("exclude")) == ("environment", "argument")
    assert BridgeConfig.from_env({}).source("include") == "default"
    with pytest.raises(ConfigError, match="DT_EXPORTER_SPAN_EVENTS_LEVEL"):
        BridgeConfig.from_env({"DT_EXPORTER_SPAN_EVENTS_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="levle"):
        BridgeConfig.from_env({}, levle="INFO")


def test_bridge_settings_are_not_exporter_keywords() -> None:
    """ExporterConfig.from_env refuses the bridge's settings: they belong to BridgeConfig."""
    with pytest.raises(ConfigError, match="span_events_level"):
        ExporterConfig.from_env(saas_env(), span_events_level="INFO")
