"""`python -m dt_exporter check` in a real subprocess: one exit code per kind of failure, and
the token never shown (reliability E29, E30, F34)."""

from __future__ import annotations

import http.server
import os
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from dt_exporter.config import SETTINGS
from dt_exporter.testing import DynatraceEmulator

REPO = Path(__file__).resolve().parents[2]


def check(**env: str) -> subprocess.CompletedProcess[str]:
    """Run `dt-exporter check` with exactly these DT_* variables."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DT_", "OTEL_")) and not k.lower().endswith("_proxy")}
    result = subprocess.run(
        [sys.executable, "-m", "dt_exporter", "check"],
        cwd=REPO, capture_output=True, text=True, timeout=60, env={**clean, **env},
    )
    token = env.get("DT_API_TOKEN", "")
    if token:
        secret = token.split(".")[-1]
        output = result.stdout + result.stderr
        assert token not in output
        assert secret not in output
        assert token.split(".")[1] not in output  # not even the whole public part
    return result


def settings_rows(out: str) -> dict[str, tuple[str, str]]:
    """The "Effective configuration" table of check's output: variable -> (value, source)."""
    table = out.split("Effective configuration:\n", 1)[1].split("\n\n", 1)[0]
    rows = {}
    for line in table.splitlines():
        variable, rest = line.split(None, 1)
        value, _, source = rest.rstrip().rpartition(" (")
        rows[variable] = (value.strip(), source.rstrip(")"))
    return rows


def test_ok_against_the_emulator(dynatrace: DynatraceEmulator) -> None:
    """A good setup exits 0, lists every setting with its source, redacts the token."""
    result = check(DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=dynatrace.token,
                   DT_EXPORTER_GZIP_LEVEL="6")
    assert result.returncode == 0, result.stdout
    out = result.stdout
    assert f"{dynatrace.token[:11]}…(redacted)" in out
    rows = settings_rows(out)
    assert rows["DT_EXPORTER_GZIP_LEVEL"] == ("6", "environment")
    assert rows["DT_EXPORTER_TIMEOUT"] == ("10.0", "default")
    assert rows["DT_ENDPOINT"] == (dynatrace.url, "environment")
    assert "Endpoint kind: custom" in out
    assert "token: accepted, scope logs.ingest present" in out
    assert "Result: OK" in out
    [request] = dynatrace.requests
    assert request.body == b"[]" and request.status == 204
    assert dynatrace.records == []  # the probe ingests nothing


def test_unknown_token_exits_5_with_the_fix(dynatrace: DynatraceEmulator) -> None:
    """A token Dynatrace does not know: 401, exit 5, one sentence saying what to do."""
    unknown = "dt0c01." + "U" * 24 + "." + "V" * 64
    result = check(DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=unknown)
    assert result.returncode == 5
    assert "401" in result.stdout
    assert "set DT_API_TOKEN" in result.stdout


def test_token_without_logs_ingest_exits_5_naming_the_scope(
    dynatrace: DynatraceEmulator,
) -> None:
    """A valid token without `logs.ingest`: 403, exit 5, the scope named."""
    token = dynatrace.mint_token(scopes=["events.ingest"])
    result = check(DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=token)
    assert result.returncode == 5
    assert "403" in result.stdout
    assert "lacks the scope logs.ingest" in result.stdout


def test_connection_refused_exits_3() -> None:
    """Nothing listens on the port: exit 3 and a sentence about host and port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = check(DT_ENDPOINT=f"http://127.0.0.1:{port}",
                   DT_API_TOKEN="dt0c01." + "R" * 24 + "." + "T" * 64)
    assert result.returncode == 3
    assert "Could not connect" in result.stdout


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DT_ENDPOINT": "https://abc123.apps.dynatrace.com"}, "DT_ENDPOINT"),
        ({"DT_ENDPOINT": "https://abc123.live.dynatrace.com"}, "DT_API_TOKEN"),
        ({"DT_ENDPOINT": "https://abc123.live.dynatrace.com", "DT_EXPORTER_TIMEOUT": "soon"},
         "DT_EXPORTER_TIMEOUT"),
        ({"DT_ENDPOINT": "https://abc123.live.dynatrace.com",
          "DT_EXPORTER_EVENT_ROUTES": "deployment=logs"}, "DT_EXPORTER_EVENT_ROUTES"),
        ({"DT_ENDPOINT": "https://abc123.live.dynatrace.com",
          "DT_EXPORTER_EVENTS_COMPRESSION": "zstd"}, "DT_EXPORTER_EVENTS_COMPRESSION"),
        ({"DT_ENDPOINT": "https://abc123.live.dynatrace.com",
          "DT_EXPORTER_SPAN_EVENTS_LEVEL": "loud"}, "DT_EXPORTER_SPAN_EVENTS_LEVEL"),
    ],
)
def test_bad_configuration_exits_2(env: dict[str, str], variable: str) -> None:
    """Configuration errors exit 2 and name the variable, never its value."""
    token = {"DT_API_TOKEN": "dt0c01." + "C" * 24 + "." + "D" * 64} if (
        variable != "DT_API_TOKEN") else {}
    result = check(**env, **token)
    assert result.returncode == 2
    assert variable in result.stdout


class _Ok(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTPS server on 127.0.0.1 with a certificate from a private CA; yields URL, CA file."""
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(context)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", ca_file
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_untrusted_certificate_exits_4_and_ca_bundle_fixes_it(
    tls_server: tuple[str, Path],
) -> None:
    """A certificate from an unknown CA: exit 4 with the CA-bundle fix; with it: exit 0."""
    url, ca_file = tls_server
    token = "dt0c01." + "E" * 24 + "." + "F" * 64
    failed = check(DT_ENDPOINT=url, DT_API_TOKEN=token)
    assert failed.returncode == 4, failed.stdout
    assert "DT_EXPORTER_CA_BUNDLE" in failed.stdout
    fixed = check(DT_ENDPOINT=url, DT_API_TOKEN=token, DT_EXPORTER_CA_BUNDLE=str(ca_file))
    assert fixed.returncode == 0, fixed.stdout
    assert f"certificate verified ({ca_file})" in fixed.stdout


def test_oneagent_needs_no_token(dynatrace: DynatraceEmulator) -> None:
    """OneAgent's local API: kind shown as such, no token needed, no compression."""
    result = check(DT_ENDPOINT=f"{dynatrace.url}/v2/logs/ingest")
    assert result.returncode == 0, result.stdout
    assert "Endpoint kind: OneAgent local" in result.stdout
    assert "not needed (OneAgent local API)" in result.stdout
    assert "DT_EXPORTER_COMPRESSION" in result.stdout and "(derived)" in result.stdout


def test_every_setting_is_listed_with_its_value_and_source(dynatrace: DynatraceEmulator) -> None:
    """Events, routing and bridge settings appear beside the exporter's, each with its source."""
    result = check(
        DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=dynatrace.token,
        DT_EXPORTER_EVENT_ROUTES="deployment=events:custom_deployment,finding.*=security:scan",
        DT_EXPORTER_EVENTS_COMPRESSION="gzip",
        DT_EXPORTER_SPAN_EVENTS_INCLUDE="retry, cache.miss",
        DT_EXPORTER_SPAN_EVENTS_LEVEL="warning", DT_EXPORTER_ENRICHMENT="false",
    )
    assert result.returncode == 0, result.stdout
    rows = settings_rows(result.stdout)
    assert list(rows) == [setting.env_var for setting in SETTINGS]
    assert rows["DT_EXPORTER_EVENT_ROUTES"] == (
        "deployment=events:CUSTOM_DEPLOYMENT,finding.*=security:scan", "environment")
    assert rows["DT_EXPORTER_EVENTS_COMPRESSION"] == ("gzip", "environment")
    assert rows["DT_EXPORTER_SPAN_EVENTS_INCLUDE"] == ("cache.miss,retry", "environment")
    assert rows["DT_EXPORTER_SPAN_EVENTS_EXCLUDE"] == ("(none)", "default")
    assert rows["DT_EXPORTER_SPAN_EVENTS_LEVEL"] == ("WARN", "environment")
    assert rows["DT_EXPORTER_COMPRESSION"] == ("gzip", "default")
    assert rows["DT_EXPORTER_ENRICHMENT"] == ("false", "environment")


def test_unset_events_and_bridge_settings_show_their_defaults(
    dynatrace: DynatraceEmulator,
) -> None:
    """With nothing set, routing is off, events go uncompressed, the bridge takes every name."""
    rows = settings_rows(check(DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=dynatrace.token).stdout)
    assert rows["DT_EXPORTER_EVENT_ROUTES"] == ("(none)", "default")
    assert rows["DT_EXPORTER_EVENTS_COMPRESSION"] == ("none", "default")
    assert rows["DT_EXPORTER_SPAN_EVENTS_INCLUDE"] == ("(all)", "default")
    assert rows["DT_EXPORTER_SPAN_EVENTS_LEVEL"] == ("INFO", "default")


def test_a_proxy_password_is_never_shown(dynatrace: DynatraceEmulator) -> None:
    """A proxy URL's password is redacted in the table; the row names where the URL came from."""
    result = check(DT_ENDPOINT=dynatrace.url, DT_API_TOKEN=dynatrace.token,
                   HTTPS_PROXY="http://alice:s3cr3t-pw@127.0.0.1:9", NO_PROXY="127.0.0.1")
    assert "s3cr3t-pw" not in result.stdout + result.stderr
    value, source = settings_rows(result.stdout)["DT_EXPORTER_PROXY"]
    assert "127.0.0.1:9" in value and "HTTPS_PROXY" in value and source == "environment"


def test_check_shows_the_enrichment_this_process_would_add(dynatrace: DynatraceEmulator,
                                                          tmp_path: Path) -> None:
    """Run where a OneAgent-monitored process runs (its magic file in the working directory),
    check names the file and the attributes every record will carry."""
    attributes = tmp_path / "process.json"
    attributes.write_text('{"dt.entity.process_group_instance": "PROCESS_GROUP_INSTANCE-1",'
                          ' "dt.entity.host": "HOST-1"}')
    (tmp_path / "dt_metadata_e617c525669e072eebe3d0f08212e8f2.json").write_text(str(attributes))
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    result = subprocess.run(
        [sys.executable, "-m", "dt_exporter", "check"], cwd=tmp_path, capture_output=True,
        text=True, timeout=60,
        env={**clean, "DT_ENDPOINT": dynatrace.url, "DT_API_TOKEN": dynatrace.token,
             "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Enrichment: 2 attributes added under every record's resource" in result.stdout
    assert f"process: {attributes}" in result.stdout
    assert "dt.entity.host, dt.entity.process_group_instance" in result.stdout
