"""Every guide's example (docs/guides/, examples/guides/) runs for real against the emulator:
servers as subprocesses on 127.0.0.1 taking HTTP requests, scripts as scripts, so no guide can rot.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dt_exporter.testing import DynatraceEmulator, ReceivedRecord

GUIDES = Path(__file__).resolve().parents[2] / "examples" / "guides"
BIN = Path(sys.executable).parent
STARTUP_S = 30.0


def _environment(dt: DynatraceEmulator) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    return clean | {"DT_ENDPOINT": dt.url, "DT_API_TOKEN": dt.token,
                    "DT_EXPORTER_ENRICHMENT": "false"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def get(port: int, path: str) -> tuple[int, str]:
    """GET a path on the server under test: status and body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def served(command: list[str], dt: DynatraceEmulator, port: int) -> Iterator[list[str]]:
    """Run a server until the block ends, then stop it with SIGTERM as a process manager does,
    and wait for it to exit; yields a list that receives the server's output once it has."""
    process = subprocess.Popen(command, cwd=GUIDES, env=_environment(dt), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output: list[str] = []
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:  # bounded: the server listens within STARTUP_S or the test fails
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"did not start: {process.communicate()[0]}") from None
                time.sleep(0.05)
        yield output
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            output.append(process.communicate(timeout=60)[0])
        except subprocess.TimeoutExpired:
            process.kill()
            output.append("(no exit within 60 s of SIGTERM: killed)\n" + process.communicate()[0])
    assert process.returncode in (0, -signal.SIGTERM), output[0]


def _by_content(records: list[ReceivedRecord]) -> dict[str, ReceivedRecord]:
    return {r.content: r for r in records}


def _gunicorn(app: str, port: int) -> list[str]:
    return [str(BIN / "gunicorn"), "-c", "gunicorn.conf.py", "-b", f"127.0.0.1:{port}", app]


def test_gunicorn_workers_each_set_up_and_flush_on_exit(dynatrace: DynatraceEmulator) -> None:
    """Under gunicorn with two workers (post_worker_init / worker_exit hooks), every request's
    record arrives once, from the worker that served it, and nothing from the master."""
    port = _free_port()
    with served(_gunicorn("wsgi_app:app", port), dynatrace, port):
        served_by = [get(port, f"/item/{i}")[1].split()[-1] for i in range(20)]
    records = dynatrace.records  # all delivered before the workers exited
    assert sorted(r.content for r in records) == sorted(f"handled /item/{i}" for i in range(20))
    assert [str(r.attributes["worker.pid"]) for r in sorted(
        records, key=lambda r: int(r.content.rsplit("/", 1)[1]))] == served_by
    assert {r.attributes["service.name"] for r in records} == {"guide-gunicorn"}


def test_uwsgi_workers_set_up_after_fork_and_flush_on_exit(dynatrace: DynatraceEmulator) -> None:
    """Under uWSGI (master, two processes, @postfork and uwsgi.atexit), every request's record
    arrives once, from the worker that served it."""
    port = _free_port()
    command = [str(BIN / "uwsgi"), "--master", "--processes", "2", "--die-on-term",
               "--need-app", "--http-socket", f"127.0.0.1:{port}", "--module", "uwsgi_app:app",
               "--disable-logging"]
    with served(command, dynatrace, port):
        # Both workers through @postfork before the SIGTERM: one interrupted there makes
        # uWSGI wait out its 60 s mercy for it.
        deadline = time.monotonic() + STARTUP_S
        while sum(r.content.endswith(" ready") for r in dynatrace.records) < 2:
            assert time.monotonic() < deadline, "the workers did not both get ready"
            time.sleep(0.05)
        served_by = [get(port, f"/item/{i}")[1].split()[-1] for i in range(20)]
    records = [r for r in dynatrace.records if not r.content.endswith(" ready")]
    assert sorted(r.content for r in records) == sorted(f"handled /item/{i}" for i in range(20))
    assert [str(r.attributes["worker.pid"]) for r in sorted(
        records, key=lambda r: int(r.content.rsplit("/", 1)[1]))] == served_by
    assert {r.attributes["service.name"] for r in records} == {"guide-uwsgi"}


@pytest.mark.parametrize(
    ("app", "error_content"),
    [("flask_app:create_app()", "Exception on /fail [GET]"),
     ("django_app:application", "Internal Server Error: /fail")],
)
def test_wsgi_framework_logs_and_errors_arrive(
    dynatrace: DynatraceEmulator, app: str, error_content: str
) -> None:
    """Flask and Django under gunicorn: the view's INFO line arrives with its attribute, and the
    framework's own ERROR for an unhandled exception arrives with the exception (Django's
    LOGGING replaced the root's handlers, and the Dynatrace one, added after, still works)."""
    port = _free_port()
    with served(_gunicorn(app, port), dynatrace, port):
        assert get(port, "/orders/7") == (200, "order 7\n")
        assert get(port, "/fail")[0] == 500
    records = _by_content(dynatrace.records)
    assert records["order 7 shown"].attributes["order.id"] == 7
    assert records["order 7 shown"].loglevel == "INFO"
    assert records[error_content].loglevel == "ERROR"
    assert records[error_content].attributes["exception.type"] == "RuntimeError"


def test_fastapi_lifespan_sets_up_and_flushes(dynatrace: DynatraceEmulator) -> None:
    """FastAPI under uvicorn: the lifespan sets up and, at SIGTERM, flushes; the request's log
    record carries the trace id of the request's span."""
    port = _free_port()
    command = [sys.executable, "-m", "uvicorn", "fastapi_app:app", "--host", "127.0.0.1",
               "--port", str(port), "--no-access-log"]
    with served(command, dynatrace, port):
        assert get(port, "/orders/7") == (200, '{"order":7}')
    (record,) = dynatrace.records
    assert record.content == "order 7 shown"
    assert record.attributes["order.id"] == 7
    assert len(record.trace_id or "") == 32


def _run_script(script: str, dt: DynatraceEmulator) -> None:
    done = subprocess.run([sys.executable, script], cwd=GUIDES, env=_environment(dt),
                          capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "delivered 3 of 3" in done.stdout


def test_structlog_events_arrive_with_their_keys(dynatrace: DynatraceEmulator) -> None:
    """structlog through stdlib: bound, contextvar and call-site keys are attributes; levels
    and the exception are kept."""
    _run_script("structlog_example.py", dynatrace)
    records = _by_content(dynatrace.records)
    placed = records["order placed"]
    assert (placed.attributes["order_id"], placed.attributes["total"]) == (1042, 99.5)
    assert (placed.attributes["customer"], placed.attributes["request_id"]) == ("c-7", "r-1")
    assert records["stock low"].loglevel == "WARN"
    assert records["lookup failed"].loglevel == "ERROR"
    assert records["lookup failed"].attributes["exception.type"] == "KeyError"


def test_loguru_messages_arrive_with_their_extra(dynatrace: DynatraceEmulator) -> None:
    """loguru through the stdlib sink: bind() and contextualize() keys are attributes; SUCCESS
    arrives as INFO, exceptions as ERROR with their type."""
    _run_script("loguru_example.py", dynatrace)
    records = _by_content(dynatrace.records)
    placed = records["order placed 1042"]
    assert (placed.attributes["customer"], placed.attributes["request_id"]) == ("c-7", "r-1")
    assert placed.attributes["order_id"] == 1042
    assert records["payment settled"].loglevel == "INFO"
    assert records["lookup failed"].loglevel == "ERROR"
    assert records["lookup failed"].attributes["exception.type"] == "KeyError"


def test_the_readme_by_hand_snippet_delivers_its_info_record(
    dynatrace: DynatraceEmulator,
) -> None:
    """The README's "By hand" snippet, run as written (only the endpoint pointed at the
    emulator), is complete: its INFO line arrives."""
    readme = (GUIDES.parents[1] / "README.md").read_text(encoding="utf-8")
    section = readme.split("### By hand, in SDK setup code", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    endpoint = '"https://abc12345.live.dynatrace.com"'
    assert endpoint in snippet
    done = subprocess.run(
        [sys.executable, "-c", snippet.replace(endpoint, repr(dynatrace.url))],
        env={k: v for k, v in _environment(dynatrace).items() if k != "DT_ENDPOINT"},
        capture_output=True, text=True,
        timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert [r.content for r in dynatrace.records] == ["hello Dynatrace"]
