"""ExporterConfig: endpoint parsing, precedence, tokens, cross-setting rules, and no token leaks."""

from __future__ import annotations

import traceback

import pytest

from dt_exporter.config import Endpoint, ExporterConfig, Secret, parse_endpoint
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
