"""`python -m dt_exporter preflight CONFIG` in a real subprocess against the emulator: the
shipped Collector and Fluent Bit configs, as shipped or in their documented ActiveGate variant,
refused for what would lose data once started, and probed with `check`'s harmless request."""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from dt_exporter.testing import DynatraceEmulator

REPO = Path(__file__).resolve().parents[2]
OTELCOL = REPO / "collector-config" / "otelcol"
FLUENT_BIT = REPO / "collector-config" / "fluent-bit"
ENV_ID = "abc12345"


def preflight(config: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `dt-exporter preflight CONFIG` with exactly these DT_* variables; the token (and its
    secret part) must never appear in what it prints."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    clean = {k: v for k, v in clean.items() if "proxy" not in k.lower()}
    result = subprocess.run(
        [sys.executable, "-m", "dt_exporter", "preflight", str(config), *args],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**clean, **env},
    )
    token = env.get("DT_API_TOKEN", "")
    if token:
        output = result.stdout + result.stderr
        assert token not in output
        assert token.split(".")[-1] not in output
        assert token.split(".")[1] not in output
    assert "Traceback" not in result.stderr, result.stderr
    return result


@pytest.fixture
def private_ca(tmp_path: Path) -> Iterator[tuple[DynatraceEmulator, Path]]:
    """An HTTPS emulator playing an ActiveGate (/e/{env}) with a private CA; yields it and the
    CA's PEM file."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_file = tmp_path / "activegate-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with DynatraceEmulator(env_id=ENV_ID, ssl_context=context) as emulator:
        yield emulator, ca_file


def activegate_variant(source: Path, port: int, tmp_path: Path) -> Path:
    """The Fluent Bit file turned into the ActiveGate variant its comments describe (Port, the
    /e/${DT_ENV_ID} prefix, tls.ca_file ${DT_CA_BUNDLE}), the port being the emulator's; the
    parsers file is copied beside it, as it ships."""
    text = source.read_text(encoding="utf-8")
    if source.suffix == ".conf":
        text = re.sub(r"(?m)^(    Port\s+)443$", rf"\g<1>{port}", text)
        text = re.sub(r"(?m)^(    (?:URI|Logs_uri)\s+)(/api/v2/\S+)$",
                      r"\g<1>/e/${DT_ENV_ID}\g<2>\n    tls.ca_file               ${DT_CA_BUNDLE}",
                      text)
    else:
        text = re.sub(r"(?m)^(      port: )443$", rf"\g<1>{port}", text)
        text = re.sub(r"(?m)^(      (?:uri|logs_uri): )(/api/v2/\S+)$",
                      r"\g<1>/e/${DT_ENV_ID}\g<2>\n      tls.ca_file: ${DT_CA_BUNDLE}", text)
    assert f"{port}" in text and "/e/${DT_ENV_ID}/api/v2/" in text
    target = tmp_path / source.name
    target.write_text(text, encoding="utf-8")
    shutil.copy(FLUENT_BIT / "parsers-json.conf", tmp_path / "parsers-json.conf")
    return target


# -- OpenTelemetry Collector -------------------------------------------------------------------


def test_saas_config_passes_and_the_probe_ingests_nothing(dynatrace: DynatraceEmulator) -> None:
    """saas.yaml with DT_ENDPOINT and a good token: exit 0, one empty OTLP request to the URL the
    Collector will use (/api/v2/otlp/v1/logs), no record ingested, the token redacted."""
    result = preflight(OTELCOL / "saas.yaml", DT_ENDPOINT=dynatrace.url,
                       DT_API_TOKEN=dynatrace.token)
    assert result.returncode == 0, result.stdout
    out = result.stdout
    assert f"OTLP to {dynatrace.url}/api/v2/otlp/v1/logs" in out
    assert "DT_COLLECTOR_STORAGE_DIR  unset, default used" in out
    assert f"{dynatrace.token[:11]}…(redacted)" in out
    assert "Result: OK" in out
    [request] = dynatrace.requests
    assert request.path == "/api/v2/otlp/v1/logs"
    assert request.headers["Content-Type"] == "application/x-protobuf"
    assert request.body == b"" and request.status == 200
    assert dynatrace.records == []


@pytest.mark.parametrize("config", ["saas.yaml", "agent.yaml", "activegate.yaml"])
def test_unset_variables_are_refused_and_nothing_is_sent(
    config: str, dynatrace: DynatraceEmulator
) -> None:
    """With DT_API_TOKEN unset (the Collector would only warn, then 401 every batch): exit 2,
    the variable named, no request sent."""
    result = preflight(OTELCOL / config, DT_ENDPOINT=dynatrace.url)
    assert result.returncode == 2, result.stdout
    assert "${env:DT_API_TOKEN} is not set" in result.stdout
    assert re.search(r"DT_API_TOKEN +NOT SET", result.stdout)
    assert "nothing was sent" in result.stdout
    assert dynatrace.requests == []


def test_empty_variable_is_refused_even_with_a_default(dynatrace: DynatraceEmulator) -> None:
    """DT_COLLECTOR_STORAGE_DIR set but empty: its default does not apply (unset only), so the
    queue directory would be empty: exit 2."""
    result = preflight(OTELCOL / "saas.yaml", DT_ENDPOINT=dynatrace.url,
                       DT_API_TOKEN=dynatrace.token, DT_COLLECTOR_STORAGE_DIR="")
    assert result.returncode == 2, result.stdout
    assert "DT_COLLECTOR_STORAGE_DIR is set but empty (the default applies only when it is " \
           "unset)" in result.stdout
    assert dynatrace.requests == []


@pytest.mark.parametrize("suffix", ["/api/v2/otlp", "/api/v2/otlp/"])
def test_endpoint_with_the_otlp_path_is_refused_as_doubled(
    suffix: str, dynatrace: DynatraceEmulator
) -> None:
    """DT_ENDPOINT written as Dynatrace's Collector page writes it (with /api/v2/otlp): the
    config appends it again, so every request would 404: exit 2 naming the variable and the
    doubled URL."""
    result = preflight(OTELCOL / "saas.yaml", DT_ENDPOINT=dynatrace.url + suffix,
                       DT_API_TOKEN=dynatrace.token)
    assert result.returncode == 2, result.stdout
    assert "/api/v2/otlp twice (404)" in result.stdout
    assert "DT_ENDPOINT must be the environment's base URL" in result.stdout
    assert dynatrace.requests == []


def test_dynatrace_docs_style_endpoint_without_otlp_path_is_refused(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """A config whose endpoint is the bare ${env:DT_ENDPOINT} with a base URL in it: the
    Collector would post to {base}/v1/logs, not Dynatrace's path: exit 2 saying what to append."""
    config = tmp_path / "docs-style.yaml"
    text = (OTELCOL / "saas.yaml").read_text(encoding="utf-8")
    config.write_text(text.replace("endpoint: ${env:DT_ENDPOINT}/api/v2/otlp",
                                   "endpoint: ${env:DT_ENDPOINT}"), encoding="utf-8")
    refused = preflight(config, DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=dynatrace.token)
    assert refused.returncode == 2, refused.stdout
    assert "it must end in /api/v2/otlp" in refused.stdout
    # ... and the same file is right when DT_ENDPOINT carries the path, as those docs say.
    accepted = preflight(config, DT_ENDPOINT=dynatrace.url + "/api/v2/otlp",
                         DT_API_TOKEN=dynatrace.token)
    assert accepted.returncode == 0, accepted.stdout
    assert [r.path for r in dynatrace.requests] == ["/api/v2/otlp/v1/logs"]


def test_unknown_token_exits_5(dynatrace: DynatraceEmulator) -> None:
    """A token Dynatrace does not know: the probe gets 401, exit 5, and the hint names the
    config's header rather than dt_exporter's own variables only."""
    unknown = "dt0c01." + "U" * 24 + "." + "V" * 64
    result = preflight(OTELCOL / "agent.yaml", DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=unknown)
    assert result.returncode == 5, result.stdout
    assert "401" in result.stdout
    assert "the exporter's Authorization header" in result.stdout


def test_token_without_logs_ingest_exits_5(dynatrace: DynatraceEmulator) -> None:
    """A valid token without logs.ingest: 403, exit 5, the scope named."""
    token = dynatrace.mint_token(scopes=["events.ingest"])
    result = preflight(OTELCOL / "saas.yaml", DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=token)
    assert result.returncode == 5, result.stdout
    assert "lacks the scope logs.ingest" in result.stdout


def test_nothing_listening_exits_3() -> None:
    """Connection refused at the endpoint: exit 3."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = preflight(OTELCOL / "saas.yaml", "--timeout", "2",
                       DT_ENDPOINT=f"http://127.0.0.1:{port}",
                       DT_API_TOKEN="dt0c01." + "R" * 24 + "." + "T" * 64)
    assert result.returncode == 3, result.stdout
    assert "Could not connect" in result.stdout


def test_activegate_config_over_tls_with_its_ca_passes(
    private_ca: tuple[DynatraceEmulator, Path],
) -> None:
    """activegate.yaml against an HTTPS ActiveGate stand-in with a private CA: with DT_CA_BUNDLE
    the probe verifies the certificate and the token: exit 0."""
    emulator, ca_file = private_ca
    result = preflight(OTELCOL / "activegate.yaml", DT_ENDPOINT=f"{emulator.url}/e/{ENV_ID}",
                       DT_API_TOKEN=emulator.token, DT_CA_BUNDLE=str(ca_file))
    assert result.returncode == 0, result.stdout
    assert f"certificate verified ({ca_file})" in result.stdout
    assert [r.path for r in emulator.requests] == [f"/e/{ENV_ID}/api/v2/otlp/v1/logs"]


def test_missing_ca_file_is_refused(
    private_ca: tuple[DynatraceEmulator, Path], tmp_path: Path
) -> None:
    """DT_CA_BUNDLE naming a file that does not exist: every handshake would fail: exit 2."""
    emulator, _ = private_ca
    missing = tmp_path / "no-such-ca.pem"
    result = preflight(OTELCOL / "activegate.yaml", DT_ENDPOINT=f"{emulator.url}/e/{ENV_ID}",
                       DT_API_TOKEN=emulator.token, DT_CA_BUNDLE=str(missing))
    assert result.returncode == 2, result.stdout
    assert f"{missing} does not exist" in result.stdout
    assert emulator.requests == []


def test_a_file_that_is_not_pem_is_refused(
    private_ca: tuple[DynatraceEmulator, Path], tmp_path: Path
) -> None:
    """DT_CA_BUNDLE naming a file that holds no certificate: exit 2."""
    emulator, _ = private_ca
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n", encoding="utf-8")
    result = preflight(OTELCOL / "activegate.yaml", DT_ENDPOINT=f"{emulator.url}/e/{ENV_ID}",
                       DT_API_TOKEN=emulator.token, DT_CA_BUNDLE=str(junk))
    assert result.returncode == 2, result.stdout
    assert "is not a readable PEM certificate file" in result.stdout


def test_the_wrong_ca_exits_4_pointing_at_the_configs_ca_file(
    private_ca: tuple[DynatraceEmulator, Path], tmp_path: Path
) -> None:
    """A CA file from another CA: the handshake fails, exit 4, and the hint names tls.ca_file."""
    emulator, _ = private_ca
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    result = preflight(OTELCOL / "activegate.yaml", DT_ENDPOINT=f"{emulator.url}/e/{ENV_ID}",
                       DT_API_TOKEN=emulator.token, DT_CA_BUNDLE=str(other))
    assert result.returncode == 4, result.stdout
    assert "the exporter's tls.ca_file" in result.stdout


def test_switching_verification_off_is_refused(
    private_ca: tuple[DynatraceEmulator, Path], tmp_path: Path
) -> None:
    """insecure_skip_verify: true would send the token to whoever answers: exit 2."""
    emulator, ca_file = private_ca
    config = tmp_path / "insecure.yaml"
    text = (OTELCOL / "activegate.yaml").read_text(encoding="utf-8")
    config.write_text(text.replace("insecure_skip_verify: false", "insecure_skip_verify: true"),
                      encoding="utf-8")
    result = preflight(config, DT_ENDPOINT=f"{emulator.url}/e/{ENV_ID}",
                       DT_API_TOKEN=emulator.token, DT_CA_BUNDLE=str(ca_file))
    assert result.returncode == 2, result.stdout
    assert "insecure_skip_verify is true" in result.stdout


def test_no_probe_checks_only_the_file_and_the_environment(dynatrace: DynatraceEmulator) -> None:
    """--no-probe: exit 0 for a good file and environment, and no request at all."""
    result = preflight(OTELCOL / "saas.yaml", "--no-probe", DT_ENDPOINT=dynatrace.url,
                       DT_API_TOKEN=dynatrace.token)
    assert result.returncode == 0, result.stdout
    assert "nothing was sent" in result.stdout
    assert dynatrace.requests == []


def test_unreadable_or_foreign_file_exits_2(tmp_path: Path) -> None:
    """A file that is neither tool's config, or that does not exist: exit 2 with the reason."""
    foreign = tmp_path / "compose.yaml"
    foreign.write_text("services:\n  web: {}\n", encoding="utf-8")
    result = preflight(foreign)
    assert result.returncode == 2
    assert "neither an OpenTelemetry Collector configuration" in result.stdout
    missing = preflight(tmp_path / "absent.conf")
    assert missing.returncode == 2
    assert "cannot read" in missing.stdout


# -- Fluent Bit ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tail-http-json.conf", "tail-http-json.yaml",
                                  "tail-opentelemetry.conf", "tail-opentelemetry.yaml"])
def test_fluent_bit_unset_variables_are_refused(name: str) -> None:
    """The shipped Fluent Bit files with DT_HOST and DT_API_TOKEN unset (`--dry-run` passes):
    exit 2 naming both."""
    result = preflight(FLUENT_BIT / name)
    assert result.returncode == 2, result.stdout
    assert "${DT_HOST} is not set" in result.stdout
    assert "${DT_API_TOKEN} is not set" in result.stdout


@pytest.mark.parametrize(
    ("name", "path", "content_type"),
    [
        ("tail-http-json.conf", "/api/v2/logs/ingest", "application/json; charset=utf-8"),
        ("tail-http-json.yaml", "/api/v2/logs/ingest", "application/json; charset=utf-8"),
        ("tail-opentelemetry.conf", "/api/v2/otlp/v1/logs", "application/x-protobuf"),
        ("tail-opentelemetry.yaml", "/api/v2/otlp/v1/logs", "application/x-protobuf"),
    ],
)
def test_fluent_bit_activegate_variant_passes_over_tls(
    name: str, path: str, content_type: str, private_ca: tuple[DynatraceEmulator, Path],
    tmp_path: Path,
) -> None:
    """Each Fluent Bit file in its documented ActiveGate variant, against the HTTPS stand-in:
    the probe goes to the output's own URL (JSON array for http, empty OTLP for opentelemetry)
    with its token and CA: exit 0, nothing ingested."""
    emulator, ca_file = private_ca
    config = activegate_variant(FLUENT_BIT / name, emulator.port, tmp_path)
    result = preflight(config, DT_HOST="127.0.0.1", DT_API_TOKEN=emulator.token,
                       DT_ENV_ID=ENV_ID, DT_CA_BUNDLE=str(ca_file))
    assert result.returncode == 0, result.stdout
    [request] = emulator.requests
    assert request.path == f"/e/{ENV_ID}{path}"
    assert request.headers["Content-Type"] == content_type
    assert 200 <= (request.status or 0) < 300
    assert emulator.records == []


def test_fluent_bit_missing_parsers_file_is_refused(
    private_ca: tuple[DynatraceEmulator, Path], tmp_path: Path
) -> None:
    """tail-http-json without parsers-json.conf beside it: Fluent Bit would not start: exit 2."""
    emulator, ca_file = private_ca
    config = activegate_variant(FLUENT_BIT / "tail-http-json.conf", emulator.port, tmp_path)
    (tmp_path / "parsers-json.conf").unlink()
    result = preflight(config, DT_HOST="127.0.0.1", DT_API_TOKEN=emulator.token,
                       DT_ENV_ID=ENV_ID, DT_CA_BUNDLE=str(ca_file))
    assert result.returncode == 2, result.stdout
    assert "Parsers_File" in result.stdout and "does not exist" in result.stdout
    assert emulator.requests == []


def test_fluent_bit_host_given_as_url_is_refused() -> None:
    """DT_HOST written as a URL (it takes a host name only): exit 2 saying so."""
    result = preflight(FLUENT_BIT / "tail-http-json.conf",
                       DT_HOST="https://abc12345.live.dynatrace.com",
                       DT_API_TOKEN="dt0c01." + "H" * 24 + "." + "K" * 64)
    assert result.returncode == 2, result.stdout
    assert "it takes a host name only" in result.stdout


def test_fluent_bit_classic_set_variables_count_as_set(
    dynatrace: DynatraceEmulator, tmp_path: Path
) -> None:
    """Variables defined with @SET are used like Fluent Bit does: a plain-http output to the
    loopback emulator passes with DT_HOST from @SET and the token from the environment."""
    config = tmp_path / "set.conf"
    config.write_text(
        f"@SET DT_HOST=127.0.0.1\n[OUTPUT]\n    Name http\n    Match *\n    Host ${{DT_HOST}}\n"
        f"    Port {dynatrace.port}\n    URI /api/v2/logs/ingest\n    Format json\n"
        "    Header Authorization Api-Token ${DT_API_TOKEN}\n",
        encoding="utf-8",
    )
    result = preflight(config, DT_API_TOKEN=dynatrace.token)
    assert result.returncode == 0, result.stdout
    assert [r.body for r in dynatrace.requests] == [b"[]"]
