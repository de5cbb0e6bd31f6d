"""`dt-exporter check`: show the effective configuration and test it against Dynatrace.

Prints every setting (the table below) with its value and its source: environment, default,
or derived (another setting changed the default); the token is shown only by its public prefix,
a proxy without its password. Then the kind of endpoint, then sends one harmless request: an
empty JSON array `[]` to the logs ingest URL (an empty OTLP request with
DT_EXPORTER_PROTOCOL=otlp), which ingests nothing yet proves reachability, TLS, the token and its
`logs.ingest` scope. No redirects are followed.

Exit status: 0 ok, 2 configuration, 3 network, 4 TLS, 5 token (401/403), 6 other HTTP answer.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

from dt_exporter.config import (
    BRIDGE_SETTINGS,
    SETTINGS,
    BridgeConfig,
    EventRoutes,
    ExporterConfig,
    ProxySettings,
    Secret,
    Setting,
    SettingSource,
    read_env,
    redact_url,
)
from dt_exporter.errors import ConfigError, TransportError
from dt_exporter.pipeline import (
    Response,
    describe_proxy,
    enrichment,
    meaning,
    send_probe,
    server_message,
)

EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
EXIT_NETWORK: Final = 3
EXIT_TLS: Final = 4
EXIT_AUTH: Final = 5
EXIT_HTTP: Final = 6

KIND_NAMES: Final = {
    "saas": "SaaS",
    "managed": "Managed",
    "activegate": "ActiveGate",
    "oneagent": "OneAgent local",
    "custom": "custom",
}
SCOPE: Final = "logs.ingest"
_TOKEN_SHAPE: Final = re.compile(r"dt0[a-zA-Z][0-9]{2}")


def add_parser(subparsers: Any, name: str) -> None:
    subparsers.add_parser(
        name,
        help="print the effective configuration and test endpoint, TLS and token",
        description=__doc__,
        epilog=settings_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def settings_help() -> str:
    """The settings table for `--help`: variable, default, meaning."""
    width = max(len(s.env_var) for s in SETTINGS)
    rows = [f"  {s.env_var:<{width}}  {s.description} (default: {s.default})" for s in SETTINGS]
    return "settings (keyword arguments > environment > defaults):\n" + "\n".join(rows)


@dataclass(frozen=True, slots=True)
class Verdict:
    code: int
    headline: str  # OK / what failed
    sentence: str  # one sentence: what it means and how to fix it


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    try:
        config = ExporterConfig.from_env()
        bridge = BridgeConfig.from_env()
    except ConfigError as error:  # names the setting, never the value
        print(f"Configuration error: {error}", file=out)
        print("Fix the variable named above (see `dt-exporter check --help` and the README's "
              "configuration table), then run check again.", file=out)
        return EXIT_CONFIG
    print_configuration(config, bridge, out)
    verdict = probe(config, out)
    print(f"\nResult: {verdict.headline}", file=out)
    if verdict.sentence:
        print(verdict.sentence, file=out)
    return verdict.code


def redact_token(value: str) -> str:
    """At most the token's type prefix and the first 4 characters of its public identifier."""
    prefix, _, rest = value.partition(".")
    if _TOKEN_SHAPE.fullmatch(prefix) and rest:
        public = rest.partition(".")[0]
        return f"{prefix}.{public[:4]}…(redacted)"
    return "…(redacted)"


def print_configuration(config: ExporterConfig, bridge: BridgeConfig, out: TextIO) -> None:
    """Every row of `config.SETTINGS`: variable, value (secrets redacted), source."""
    print("Effective configuration:", file=out)
    width = max(len(s.env_var) for s in SETTINGS)
    for setting in SETTINGS:
        value, source = setting_value(setting, config, bridge)
        print(f"  {setting.env_var:<{width}}  {_show(setting, value):<44} ({source})", file=out)
    endpoint = config.endpoint
    print(f"\nEndpoint kind: {KIND_NAMES[endpoint.kind]} ({endpoint.base_url})", file=out)
    print(f"Logs ingest URL: {config.logs_url}", file=out)
    print_enrichment(out)


def print_enrichment(out: TextIO) -> None:
    """Which of Dynatrace's enrichment files were found, and what they add to every record."""
    found = enrichment()
    if not found.enabled:
        print("Enrichment: off (DT_EXPORTER_ENRICHMENT=false)", file=out)
        return
    if not found.sources and not found.problems:
        print("Enrichment: no Dynatrace enrichment file on this host (records carry only the "
              "application's resource)", file=out)
        return
    print(f"Enrichment: {len(found.attributes)} attributes added under every record's resource",
          file=out)
    for source in found.sources:
        via = f" (named by {source.via})" if source.via else ""
        print(f"  {source.level}: {source.path}{via}: {', '.join(sorted(source.attributes))}",
              file=out)
    for problem in found.problems:
        print(f"  skipped: {problem}", file=out)


def setting_value(
    setting: Setting, config: ExporterConfig, bridge: BridgeConfig
) -> tuple[object, SettingSource]:
    """The effective value of one setting and where it came from."""
    if setting.group == "bridge":
        name = next(f for f, row in BRIDGE_SETTINGS.items() if row == setting.name)
        return getattr(bridge, name), bridge.source(name)
    if setting.group in ("exporter", "events"):
        return getattr(config, setting.name), config.source(setting.name)
    raw = read_env(setting.env_var)  # resolved where it is used (enrichment): show what is set
    return (setting.default, "default") if raw is None else (raw, "environment")


def _show(setting: Setting, value: object) -> str:
    name = setting.name
    if value is None:
        return "(not set)"
    if isinstance(value, Secret):
        return redact_token(value.reveal()) if name == "token" else "…(redacted)"
    if setting.secret and not isinstance(value, ProxySettings):
        return "…(redacted)"
    if isinstance(value, ProxySettings):
        return _show_proxy(value)
    if name == "endpoint":
        return str(getattr(value, "base_url", value))
    if name == "limits":
        return str(getattr(value, "name", value))
    if isinstance(value, EventRoutes):
        return str(value) or "(none)"
    if isinstance(value, frozenset):
        return ",".join(sorted(value)) or ("(all)" if name == "span_events_include" else "(none)")
    return str(value).lower() if isinstance(value, bool) else str(value)


def _show_proxy(proxy: ProxySettings) -> str:
    """Each proxy URL without its password, and the variable it came from."""
    shown = [f"{scheme} {redact_url(url.reveal())} ({source})"
             for scheme, url, source in (("https", proxy.https, proxy.https_source),
                                         ("http", proxy.http, proxy.http_source))
             if url is not None]
    if proxy.no_proxy:
        shown.append(f"no_proxy {','.join(proxy.no_proxy)}")
    return "; ".join(shown) or "(none)"


def probe(config: ExporterConfig, out: TextIO) -> Verdict:
    """One harmless request; what its outcome says about the setup."""
    what = "an empty OTLP request" if config.protocol == "otlp" else "an empty JSON array []"
    print(f"\nProbe: POST {what} to the logs ingest URL (nothing is ingested)", file=out)
    print(f"  route: {describe_proxy(config.proxy, config.logs_url)}", file=out)
    answer = send_probe(config)
    if answer.error is not None:
        return _transport_verdict(config, answer.error)
    assert answer.response is not None
    if answer.fallback_used:
        print("  the server refused the empty array (400): sent one record with content "
              "\"dt-exporter check\" instead (it will be ingested)", file=out)
    print(f"  reachable: yes (HTTP {answer.response.status} in {answer.elapsed_s * 1000:.0f} ms)",
          file=out)
    print(f"  TLS: {_tls_state(config)}", file=out)
    return _http_verdict(config, answer.response, out)


def _host(config: ExporterConfig) -> str:
    return urlsplit(config.endpoint.base_url).netloc


def _tls_state(config: ExporterConfig) -> str:
    if not config.endpoint.base_url.startswith("https://"):
        return "not used (http://)"
    if config.insecure_skip_tls_verify:
        return "certificate NOT verified (DT_EXPORTER_INSECURE_SKIP_TLS_VERIFY)"
    return f"certificate verified ({config.ca_bundle or 'system CA store'})"


def _transport_verdict(config: ExporterConfig, error: TransportError) -> Verdict:
    host, reason = _host(config), str(error).split(": ", 1)[-1]
    if error.kind == "tls":
        return Verdict(EXIT_TLS, "FAILED: TLS",
                       f"The TLS handshake with {host} failed ({reason}); if the server uses a "
                       "private or self-signed certificate (an ActiveGate does by default), set "
                       "DT_EXPORTER_CA_BUNDLE to its CA certificate file.")
    if error.kind == "timeout":
        return Verdict(EXIT_NETWORK, "FAILED: network",
                       f"{host} accepted the connection but did not answer within "
                       f"{config.timeout_s:g} s; check proxies and firewalls on the way or raise "
                       "DT_EXPORTER_TIMEOUT.")
    if error.kind == "connect":
        hint = ("is OneAgent running on this host with its local log ingest API enabled?"
                if config.endpoint.is_oneagent else
                "check the host name and port in DT_ENDPOINT and that DNS, firewalls and "
                "proxies let this host reach it.")
        return Verdict(EXIT_NETWORK, "FAILED: network",
                       f"Could not connect to {host} ({reason}); {hint}")
    return Verdict(EXIT_NETWORK, "FAILED: network",
                   f"The connection to {host} broke off without an answer ({reason}); check that "
                   "DT_ENDPOINT uses the right scheme (https://) and port.")


def _http_verdict(config: ExporterConfig, response: Response, out: TextIO) -> Verdict:
    status = response.status
    if status in (200, 202, 204):
        token = ("not needed (OneAgent local API)" if config.token is None
                 else f"accepted, scope {SCOPE} present")
        print(f"  token: {token}", file=out)
        return Verdict(EXIT_OK, "OK", "")
    message = server_message(response.body, limit=200)
    detail = f" (server: {message})" if message else ""
    if status == 401:
        return Verdict(EXIT_AUTH, "FAILED: token",
                       f"Dynatrace refused the token (401: invalid, expired or revoked){detail}; "
                       f"create an access token with scope {SCOPE} and set DT_API_TOKEN to it.")
    if status == 403:
        return Verdict(EXIT_AUTH, "FAILED: token scope",
                       f"The token is valid but lacks the scope {SCOPE} (403){detail}; add "
                       f"{SCOPE} to the token in Dynatrace (Access tokens) or create a new one.")
    if 300 <= status < 400:
        location = response.headers.get("location", "(no Location header)")
        return Verdict(EXIT_HTTP, f"FAILED: HTTP {status}",
                       f"The server redirects to {location}; redirects are not followed (the "
                       "token must not travel elsewhere): set DT_ENDPOINT to the final URL.")
    if status == 404:
        return Verdict(EXIT_HTTP, "FAILED: HTTP 404",
                       f"No log ingest API at {config.logs_url}{detail}; SaaS uses "
                       "https://{env-id}.live.dynatrace.com, Managed and ActiveGate URLs need "
                       "/e/{env-id}, and an ActiveGate needs its log ingest module enabled.")
    if status == 429:
        return Verdict(EXIT_HTTP, "FAILED: HTTP 429",
                       f"Dynatrace is throttling, or log ingest is disabled on this environment"
                       f"{detail}; try again later and check that log ingest is enabled.")
    if status == 407:
        return Verdict(EXIT_NETWORK, "FAILED: proxy",
                       f"The proxy answered 407: {meaning(407)}{detail}.")
    explained = meaning(status) or "an unexpected answer"
    return Verdict(EXIT_HTTP, f"FAILED: HTTP {status}",
                   f"The logs ingest endpoint answered {status}: {explained}{detail}; check "
                   "DT_ENDPOINT and the environment's log ingest settings.")


