"""Through a real forward proxy on 127.0.0.1 (proxy.py, from PyPI, with basic auth) to the
emulator: plain http forwarded, https through a CONNECT tunnel with the emulator's private CA,
NO_PROXY bypassing it, a 407 reported clearly, and the proxy password in no log line."""

from __future__ import annotations

import base64
import logging
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dt_exporter._retry import PERMANENT_MEANING, Outcome, classify
from dt_exporter._transport import Transport
from dt_exporter.config import ExporterConfig, ProxySettings, Secret
from dt_exporter.testing import DynatraceEmulator

USER, PASSWORD = "exporter", "pr0xy-s3cret"
RECORD = b'[{"content": "through the proxy"}]'


class ForwardProxy:
    """proxy.py in a subprocess on a free loopback port; `lines()` reads its access log."""

    def __init__(self, tmp: Path) -> None:
        self.log_file = tmp / "proxy.log"
        port_file = tmp / "proxy.port"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "proxy", "--hostname", "127.0.0.1", "--port", "0",
             "--port-file", str(port_file), "--num-acceptors", "1", "--num-workers", "1",
             "--threaded", "--basic-auth", f"{USER}:{PASSWORD}",
             "--log-file", str(self.log_file), "--log-level", "INFO"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.stop()
                raise RuntimeError("proxy.py did not start; is the dev extra installed?")
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def url(self, user: str = USER, password: str = PASSWORD) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def access_lines(self) -> list[str]:
        """The proxy's access log: one line per request it forwarded or tunnel it closed."""
        if not self.log_file.exists():
            return []
        text = self.log_file.read_text(errors="replace")
        return [line for line in text.splitlines() if "access_log" in line]

    def wait_for_access(self, count: int, timeout: float = 10.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while len(lines := self.access_lines()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return lines

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwardProxy]:
    server = ForwardProxy(tmp_path_factory.mktemp("proxy"))
    yield server
    server.stop()


def _headers(dt: DynatraceEmulator) -> dict[str, str]:
    return {"Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Api-Token {dt.token}"}


def _via(url: str, no_proxy: tuple[str, ...] = ()) -> ProxySettings:
    return ProxySettings(Secret(url), Secret(url), no_proxy, "HTTP_PROXY", "HTTPS_PROXY")


def _post_and_close(transport: Transport, url: str, dt: DynatraceEmulator) -> int:
    """One request; closing the pool ends the proxy's connection, so it writes its log line."""
    try:
        return transport.post(url, RECORD, _headers(dt)).status
    finally:
        transport.close()


def test_plain_http_is_forwarded_through_the_proxy(proxy, emulator, caplog) -> None:
    """HTTP_PROXY from the environment: the record reaches the emulator, the proxy forwarded
    the POST, and the proxy password is in no log line."""
    config = ExporterConfig.from_env({"DT_ENDPOINT": emulator.url, "DT_API_TOKEN": emulator.token,
                                      "HTTP_PROXY": proxy.url()})
    before = len(proxy.access_lines())
    with caplog.at_level(logging.DEBUG):
        status = _post_and_close(Transport.for_config(config), config.logs_url, emulator)
    assert status == 204
    assert [r.content for r in emulator.wait_for_records(1)] == ["through the proxy"]
    new = proxy.wait_for_access(before + 1)[before:]
    assert any(f"POST 127.0.0.1:{emulator.port}/api/v2/logs/ingest" in line for line in new)
    _assert_no_secret(caplog.text + repr(config))


def test_https_goes_through_a_connect_tunnel_with_the_emulators_ca(
    proxy, tls_emulator, caplog
) -> None:
    """HTTPS_PROXY: a CONNECT tunnel to the TLS emulator, its private CA verified end to end;
    the proxy saw only the CONNECT (the request itself stayed encrypted)."""
    dt, ca_file = tls_emulator
    config = ExporterConfig.from_env({"DT_ENDPOINT": dt.url, "DT_API_TOKEN": dt.token,
                                      "DT_EXPORTER_CA_BUNDLE": str(ca_file),
                                      "HTTPS_PROXY": proxy.url()})
    before = len(proxy.access_lines())
    with caplog.at_level(logging.DEBUG):
        status = _post_and_close(Transport.for_config(config), config.logs_url, dt)
    assert status == 204
    assert len(dt.wait_for_records(1)) == 1
    new = proxy.wait_for_access(before + 1)[before:]
    assert any(f"CONNECT 127.0.0.1:{dt.port}" in line for line in new)
    assert not any("/api/v2/logs/ingest" in line for line in new)
    _assert_no_secret(caplog.text)


def test_no_proxy_bypasses_the_proxy(proxy, emulator) -> None:
    """NO_PROXY=127.0.0.1: the emulator gets the record directly and the proxy sees nothing
    (its log holds only the marker request sent through it afterwards)."""
    before = len(proxy.access_lines())
    bypassing = Transport(timeout_s=5.0, proxy=_via(proxy.url(), no_proxy=("127.0.0.1",)))
    assert _post_and_close(bypassing, f"{emulator.url}/api/v2/logs/ingest", emulator) == 204
    assert len(emulator.wait_for_records(1)) == 1
    marker = f"{emulator.url}/api/v2/logs/ingest?marker=1"
    assert _post_and_close(Transport(timeout_s=5.0, proxy=_via(proxy.url())), marker,
                           emulator) == 204
    new = proxy.wait_for_access(before + 1)[before:]
    assert len(new) == 1 and "marker=1" in new[0], new


def test_wrong_proxy_credentials_are_a_clear_permanent_407(
    proxy, emulator, tls_emulator, caplog
) -> None:
    """A 407 (forwarded http, or a refused CONNECT for https) comes back as a 407 answer that
    classifies as a permanent drop whose meaning names the proxy settings."""
    dt_tls, ca_file = tls_emulator
    wrong = _via(proxy.url(password="wrong-" + PASSWORD))
    with caplog.at_level(logging.DEBUG):
        plain = Transport(timeout_s=5.0, proxy=wrong)
        tunnel = Transport(timeout_s=5.0, ca_bundle=str(ca_file), proxy=wrong)
        answers = [plain.post(f"{emulator.url}/api/v2/logs/ingest", RECORD, _headers(emulator)),
                   tunnel.post(f"{dt_tls.url}/api/v2/logs/ingest", RECORD, _headers(dt_tls))]
        plain.close()
        tunnel.close()
    for answer in answers:
        assert answer.status == 407
        verdict = classify(answer.status, answer.headers, time.time())
        assert verdict.outcome is Outcome.DROP and verdict.reason == "http_407"
    assert "DT_EXPORTER_PROXY/HTTPS_PROXY" in PERMANENT_MEANING[407]
    assert emulator.records == [] and dt_tls.records == []
    _assert_no_secret(caplog.text, "wrong-" + PASSWORD)


def _assert_no_secret(text: str, password: str = PASSWORD) -> None:
    """Neither the password nor the Proxy-Authorization value built from it appears."""
    basic = base64.b64encode(f"{USER}:{password}".encode()).decode()
    assert password not in text
    assert basic not in text
    assert not re.search(r"(?i)proxy-authorization", text)


# -- the exporter on top ---------------------------------------------------------------------


def test_the_exporter_delivers_through_the_proxy(proxy, tls_emulator, make_records,
                                                 caplog) -> None:
    """DynatraceLogExporter(proxy=...) to the TLS emulator: every record delivered through the
    CONNECT tunnel, the accounting balanced, the password in no log line."""
    from dt_exporter import DynatraceLogExporter

    dt, ca_file = tls_emulator
    before = len(proxy.access_lines())
    with caplog.at_level(logging.DEBUG):
        exporter = DynatraceLogExporter(endpoint=dt.url, token=dt.token, ca_bundle=str(ca_file),
                                        proxy=proxy.url(), timeout_s=5.0)
        exporter.export(make_records(25))
        assert exporter.force_flush(10_000)
        exporter.shutdown()
    stats = exporter.stats()
    assert stats.delivered == 25 and stats.balanced
    assert len(dt.wait_for_records(25)) == 25
    new = proxy.wait_for_access(before + 1)[before:]
    assert any(f"CONNECT 127.0.0.1:{dt.port}" in line for line in new)
    _assert_no_secret(caplog.text + repr(exporter))


def test_the_exporter_reports_wrong_proxy_credentials_once_and_clearly(
    proxy, emulator, make_records, caplog
) -> None:
    """A 407 drops the records as http_407 (no retry loop) and the log line says to check the
    proxy credentials, without showing them."""
    from dt_exporter import DynatraceLogExporter

    wrong = "wrong-" + PASSWORD
    with caplog.at_level(logging.DEBUG):
        exporter = DynatraceLogExporter(endpoint=emulator.url, token=emulator.token,
                                        proxy=proxy.url(password=wrong), timeout_s=5.0)
        exporter.export(make_records(4))
        assert exporter.force_flush(10_000)
        exporter.shutdown()
    stats = exporter.stats()
    assert stats.delivered == 0 and stats.dropped == {"http_407": 4} and stats.balanced
    assert stats.retries == 0
    assert "proxy authentication required" in caplog.text
    assert emulator.records == []
    _assert_no_secret(caplog.text, wrong)
