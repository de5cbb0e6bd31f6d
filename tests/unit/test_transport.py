"""transport: which proxy a URL goes through, how proxies resolve from the environment, what is
shown of them, and the small pure helpers (credentials, tunnel refusals, bounded inflation)."""

from __future__ import annotations

import base64
import gzip
import zlib

import pytest
from urllib3.exceptions import ProxyError

from dt_exporter._transport import (
    Transport,
    _decoded,
    _split_proxy_url,
    _tunnel_refusal,
    bypasses_proxy,
    describe_proxy,
    select_proxy,
)
from dt_exporter.config import (
    DIRECT,
    ExporterConfig,
    ProxySettings,
    Secret,
    redact_url,
    resolve_proxies,
)
from dt_exporter.errors import ConfigError

PROXY = "http://user:s3cr%40t@proxy.corp:3128"
BASE = {"DT_ENDPOINT": "https://abc12345.live.dynatrace.com", "DT_API_TOKEN": "dt0c01.X.Y"}


def settings(no_proxy: tuple[str, ...] = (), http: str | None = PROXY,
             https: str | None = PROXY) -> ProxySettings:
    return ProxySettings(None if http is None else Secret(http),
                         None if https is None else Secret(https), no_proxy,
                         "HTTP_PROXY", "HTTPS_PROXY")


# -- resolution (config.py reads the environment) ---------------------------------------------


def test_https_proxy_serves_https_targets_and_http_proxy_http_ones() -> None:
    """HTTPS_PROXY and HTTP_PROXY are separate, as in requests."""
    resolved = resolve_proxies({"HTTPS_PROXY": "http://a:1", "HTTP_PROXY": "http://b:2"})
    assert resolved.https == Secret("http://a:1") and resolved.https_source == "HTTPS_PROXY"
    assert resolved.http == Secret("http://b:2") and resolved.http_source == "HTTP_PROXY"


def test_lower_case_names_win_even_when_empty() -> None:
    """https_proxy beats HTTPS_PROXY (urllib's rule); set empty it means no proxy."""
    assert resolve_proxies({"https_proxy": "http://low:1", "HTTPS_PROXY": "http://up:2"}).https \
        == Secret("http://low:1")
    assert resolve_proxies({"https_proxy": "", "HTTPS_PROXY": "http://up:2"}) == DIRECT


def test_all_proxy_is_the_fallback_for_both() -> None:
    """ALL_PROXY serves a scheme that has no proxy of its own."""
    resolved = resolve_proxies({"ALL_PROXY": "http://all:9", "HTTP_PROXY": "http://h:1"})
    assert resolved.https == Secret("http://all:9") and resolved.https_source == "ALL_PROXY"
    assert resolved.http == Secret("http://h:1")


def test_upper_case_http_proxy_is_ignored_under_cgi() -> None:
    """Under CGI (REQUEST_METHOD set) HTTP_PROXY may come from a request header: ignored."""
    assert resolve_proxies({"REQUEST_METHOD": "POST", "HTTP_PROXY": "http://evil:1"}) == DIRECT
    assert resolve_proxies({"REQUEST_METHOD": "POST", "http_proxy": "http://ok:1"}).http \
        == Secret("http://ok:1")


def test_explicit_proxy_wins_for_every_target_and_keeps_no_proxy() -> None:
    """DT_EXPORTER_PROXY replaces HTTPS_PROXY/HTTP_PROXY; NO_PROXY still applies."""
    config = ExporterConfig.from_env({**BASE, "HTTPS_PROXY": "http://env:1",
                                      "DT_EXPORTER_PROXY": "proxy.corp:3128",
                                      "NO_PROXY": "Localhost, .internal,,"})
    assert config.proxy.https == config.proxy.http == Secret("http://proxy.corp:3128")
    assert config.proxy.https_source == "DT_EXPORTER_PROXY"
    assert config.proxy.no_proxy == ("localhost", ".internal")


def test_explicit_none_means_direct_whatever_the_environment_says() -> None:
    """DT_EXPORTER_PROXY=none turns every proxy off."""
    config = ExporterConfig.from_env({**BASE, "HTTPS_PROXY": "http://env:1",
                                      "DT_EXPORTER_PROXY": "none"})
    assert config.proxy == DIRECT


def test_keyword_argument_beats_the_environment() -> None:
    """proxy= (a URL or a Secret) wins over DT_EXPORTER_PROXY."""
    config = ExporterConfig.from_env({**BASE, "DT_EXPORTER_PROXY": "http://env:1"},
                                     proxy=Secret("http://kw:2"))
    assert config.proxy.https == Secret("http://kw:2")


def test_no_proxy_settings_by_default() -> None:
    """With nothing set, every request goes direct."""
    assert ExporterConfig.from_env(BASE).proxy == DIRECT


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("DT_EXPORTER_PROXY", "socks5://user:hunter2@proxy:1080"),
        ("HTTPS_PROXY", "ftp://user:hunter2@proxy:21"),
        ("HTTPS_PROXY", "http://user:hunter2@proxy:notaport"),
        ("HTTPS_PROXY", "http://user:hunter2@proxy:3128/some/path"),
        ("HTTP_PROXY", "http://user:hunter2@"),
        ("ALL_PROXY", "http://user:hunter2@pro xy:1"),
    ],
)
def test_a_bad_proxy_url_names_its_variable_never_the_password(variable: str, value: str) -> None:
    """ConfigError names the variable and says what is expected; the value stays out."""
    with pytest.raises(ConfigError) as caught:
        ExporterConfig.from_env({**BASE, variable: value})
    assert caught.value.setting == variable
    assert "hunter2" not in str(caught.value)
    assert "http://[user:password@]host:port" in str(caught.value)


def test_the_password_never_shows_in_a_repr() -> None:
    """repr(config) shows the proxy redacted: user kept, password replaced."""
    config = ExporterConfig.from_env({**BASE, "HTTPS_PROXY": "http://alice:hunter2@proxy:3128"})
    text = repr(config)
    assert "hunter2" not in text and "http://alice:***@proxy:3128" in text
    assert "hunter2" not in str(config.proxy)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:pw@host:3128", "http://user:***@host:3128"),
        ("http://token@host:3128", "http://***@host:3128"),
        ("http://host:3128", "http://host:3128"),
        ("https://u:p%40ss@[::1]:8443", "https://u:***@[::1]:8443"),
        ("http://u:a@b@host:1", "http://u:***@host:1"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    """Passwords (and bare user parts, which may be tokens) become ***."""
    assert redact_url(url) == shown


# -- per URL ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("no_proxy", "url", "bypass"),
    [
        ((), "https://abc.live.dynatrace.com/api", False),
        (("*",), "https://abc.live.dynatrace.com/api", True),
        (("dynatrace.com",), "https://abc.live.dynatrace.com/api", True),
        ((".dynatrace.com",), "https://abc.live.dynatrace.com/api", True),
        (("*.dynatrace.com",), "https://abc.live.dynatrace.com/api", True),
        (("abc.live.dynatrace.com",), "https://abc.live.dynatrace.com/api", True),
        (("trace.com",), "https://abc.live.dynatrace.com/api", False),  # not a domain boundary
        (("other.com", "live.dynatrace.com"), "https://abc.live.dynatrace.com", True),
        (("localhost",), "http://localhost:14499/v2/logs/ingest", True),
        (("localhost:14499",), "http://localhost:14499/v2/logs/ingest", True),
        (("localhost:9999",), "http://localhost:14499/v2/logs/ingest", False),
        (("gate.corp:443",), "https://gate.corp/api", True),
        (("127.0.0.1",), "http://127.0.0.1:8080/", True),
        (("127.0.0.0/8",), "http://127.0.0.2:8080/", True),
        (("10.0.0.0/8",), "http://127.0.0.1:8080/", False),
        (("::1",), "http://[::1]:8080/", True),
        (("[::1]:8080",), "http://[::1]:8080/", True),
        (("127.0.0.1",), "http://localhost:8080/", False),  # no name resolution
    ],
)
def test_no_proxy_matching(no_proxy: tuple[str, ...], url: str, bypass: bool) -> None:
    """NO_PROXY: *, hosts and parent domains on a label boundary, IPs, CIDRs, optional port."""
    assert bypasses_proxy(no_proxy, url) is bypass
    assert (select_proxy(settings(no_proxy), url) is None) is bypass


def test_each_scheme_takes_its_own_proxy() -> None:
    """An https target never goes through HTTP_PROXY, nor an http one through HTTPS_PROXY."""
    only_http = settings(https=None)
    assert select_proxy(only_http, "https://abc.live.dynatrace.com") is None
    assert select_proxy(only_http, "http://127.0.0.1:9") == Secret(PROXY)
    only_https = settings(http=None)
    assert select_proxy(only_https, "http://127.0.0.1:9") is None


def test_describe_proxy_for_the_cli() -> None:
    """What `dt-exporter check` shows: direct, bypassed, or the proxy redacted with its source."""
    url = "https://abc.live.dynatrace.com/api/v2/logs/ingest"
    assert describe_proxy(DIRECT, url) == "direct"
    assert describe_proxy(settings((".dynatrace.com",)), url) == "direct (NO_PROXY)"
    shown = describe_proxy(settings(), url)
    assert shown == "via http://user:***@proxy.corp:3128 (HTTPS_PROXY, CONNECT tunnel)"
    assert "s3cr" not in shown


def test_proxy_credentials_become_proxy_authorization_and_leave_the_url() -> None:
    """user:password (percent-decoded) go into Proxy-Authorization; the address keeps none."""
    address, headers = _split_proxy_url(PROXY)
    assert address == "http://proxy.corp:3128"
    assert headers == {"proxy-authorization": "Basic "
                       + base64.b64encode(b"user:s3cr@t").decode()}
    assert _split_proxy_url("http://proxy.corp:3128") == ("http://proxy.corp:3128", {})


def test_for_config_builds_from_every_transport_setting() -> None:
    """Transport.for_config takes the timeout, TLS and proxy settings from the config."""
    config = ExporterConfig.from_env({**BASE, "DT_EXPORTER_TIMEOUT": "3.5",
                                      "HTTPS_PROXY": PROXY})
    transport = Transport.for_config(config)
    try:
        assert transport._timeout_s == 3.5
        assert transport._proxy == config.proxy
        assert list(transport._via) == [PROXY]
    finally:
        transport.close()


# -- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "refusal"),
    [
        ("Tunnel connection failed: 407 Proxy Authentication Required",
         (407, "Proxy Authentication Required")),
        ("Tunnel connection failed: 403 Forbidden", (403, "Forbidden")),
        ("Connection refused", None),
    ],
)
def test_tunnel_refusal_is_read_from_the_cause(
    message: str, refusal: tuple[int, str] | None
) -> None:
    """A CONNECT answered with non-200 is recognised from urllib3's ProxyError cause."""
    error = ProxyError("Unable to connect to proxy", OSError(message))
    assert _tunnel_refusal(error) == refusal


def test_an_unrequested_gzip_body_inflates_only_up_to_the_bound() -> None:
    """A compressed answer is inflated, but a bomb stops at the bound."""
    small = b'{"error":{"code":400}}'
    assert _decoded(gzip.compress(small), {"content-encoding": "gzip"}, 1024) == small
    bomb = gzip.compress(b"\0" * 50_000_000)
    assert len(_decoded(bomb, {"content-encoding": "gzip"}, 65536)) == 65536
    assert _decoded(zlib.compress(small), {"content-encoding": "deflate"}, 1024) == small
    assert _decoded(b"not gzip", {"content-encoding": "gzip"}, 1024) == b"not gzip"
    assert _decoded(small, {}, 1024) == small
