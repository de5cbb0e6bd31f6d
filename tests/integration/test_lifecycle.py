"""The edges of a process's life, each in a real subprocess against the emulator: flush then
`os._exit`, interpreter exit (3.12 refuses new threads then), the shutdown deadline, a restart
that only recovers its spool, a DEBUG root logger, and errors under zero-code."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

from dt_exporter import DynatraceLogExporter
from dt_exporter.testing import DynatraceEmulator, Reply

#: A by-hand OpenTelemetry logs setup, as the README shows it.
PRELUDE = textwrap.dedent(
    """
    import logging, os, sys, time
    from opentelemetry._logs import set_logger_provider
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
    from dt_exporter import DynatraceLogExporter

    provider = LoggerProvider()
    set_logger_provider(provider)
    exporter = DynatraceLogExporter()
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    logging.getLogger().addHandler(LoggingHandler(logger_provider=provider))
    logging.getLogger().setLevel(logging.INFO)
    log = logging.getLogger("app")
    """
)


def run(script: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    return subprocess.run([sys.executable, "-c", script], env=clean | env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def target(dt: DynatraceEmulator) -> dict[str, str]:
    return {"DT_ENDPOINT": dt.url, "DT_API_TOKEN": dt.token}


def test_force_flush_then_exit_loses_nothing(emulator):
    """After `LoggerProvider.force_flush()` returns, every record is at Dynatrace: the process
    may be frozen or killed right then (serverless) without losing one."""
    script = PRELUDE + textwrap.dedent(
        """
        for i in range(500):
            log.info("request %d handled", i)
        ok = provider.force_flush()
        print(orjson.dumps({"ok": ok, "stats": exporter.stats().delivered}).decode())
        sys.stdout.flush()
        os._exit(0)
        """
    ).replace("orjson", "__import__('orjson')")
    result = run(script, target(emulator))
    assert result.returncode == 0, result.stderr
    answer = orjson.loads(result.stdout)
    assert answer == {"ok": True, "stats": 500}
    assert len(emulator.records) == 500


def test_force_flush_waits_for_records_the_worker_already_exported(emulator):
    """Records the SDK's worker handed over before the flush (its queue is empty at flush
    time) are also delivered when `force_flush` returns."""
    script = PRELUDE + textwrap.dedent(
        """
        for i in range(2000):
            log.info("line %d", i)
        time.sleep(1.5)  # the SDK's worker exports on its 1 s schedule
        ok = provider.force_flush()
        print(ok, exporter.stats().delivered, flush=True)
        os._exit(0)
        """
    )
    result = run(script, target(emulator))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "2000"]
    assert len(emulator.records) == 2000


def test_a_short_script_delivers_at_interpreter_exit(emulator):
    """A script that logs and ends (the SDK shuts down from atexit, where Python 3.12+ refuses
    new threads) still delivers everything: the remaining bodies go out on the exiting thread."""
    script = PRELUDE + textwrap.dedent(
        """
        for i in range(20):
            log.info("short script line %d", i)
        """
    )
    result = run(script, target(emulator))
    assert result.returncode == 0, result.stderr
    assert len(emulator.records) == 20, result.stderr


def test_shutdown_keeps_its_own_deadline_against_an_unreachable_endpoint():
    """With Dynatrace unreachable, `LoggerProvider.shutdown()` ends after
    DT_EXPORTER_SHUTDOWN_TIMEOUT (2 s here), not the SDK's 30 s, and says what it left."""
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    script = PRELUDE + textwrap.dedent(
        """
        for i in range(5):
            log.info("line %d", i)
        started = time.monotonic()
        provider.shutdown()
        print(round(time.monotonic() - started, 1), flush=True)
        """
    )
    env = {"DT_ENDPOINT": f"http://127.0.0.1:{port}", "DT_API_TOKEN": "dt0c01.TEST",
           "DT_EXPORTER_SHUTDOWN_TIMEOUT": "2"}
    result = run(script, env)
    assert result.returncode == 0, result.stderr
    elapsed = float(result.stdout.split()[0])
    assert elapsed < 10, f"shutdown took {elapsed} s (the SDK passes 30 s)"
    assert "5 records undelivered (shutdown 5)" in result.stderr
    assert "records dropped: shutdown 5" in result.stderr


def test_a_restart_that_only_recovers_delivers_the_spool(tmp_path, emulator):
    """A process killed with bodies in its spool; the next one logs nothing at all, yet its
    `force_flush` delivers every spooled record (and returns True)."""
    spool = tmp_path / "spool"
    emulator.enqueue("logs", *[Reply(503) for _ in range(10_000)])
    writer = textwrap.dedent(
        """
        import sys, time
        from opentelemetry._logs import SeverityNumber
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        from dt_exporter import DynatraceLogExporter

        memory = InMemoryLogRecordExporter()
        provider = LoggerProvider(shutdown_on_exit=False)
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
        logger = provider.get_logger("app")
        for i in range(3000):
            logger.emit(body=f"spooled {i}", severity_number=SeverityNumber.INFO,
                        timestamp=time.time_ns())
        exporter = DynatraceLogExporter()
        records = list(memory.get_finished_logs())
        for start in range(0, 3000, 500):
            exporter.export(records[start:start + 500])
        print("spooled", flush=True)
        time.sleep(120)
        """
    )
    env = target(emulator) | {"DT_EXPORTER_SPOOL_DIR": str(spool)}
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    with subprocess.Popen([sys.executable, "-c", writer], env=clean | env,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as first:
        try:
            assert first.stdout is not None
            assert first.stdout.readline().strip() == "spooled"
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(10)
    emulator.reset()  # Dynatrace is back
    reader = textwrap.dedent(
        """
        from dt_exporter import DynatraceLogExporter
        exporter = DynatraceLogExporter()
        ok = exporter.force_flush(20_000)
        stats = exporter.stats()
        exporter.shutdown()
        print(ok, stats.delivered, stats.balanced, flush=True)
        """
    )
    result = run(reader, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "3000", "True"]
    assert len(emulator.records) == 3000


def test_a_debug_root_logger_ships_one_record_per_app_line(emulator):
    """With OpenTelemetry's handler on the root logger at DEBUG, one application line is one
    record: neither urllib3's lines about our requests nor our own are shipped."""
    script = PRELUDE + textwrap.dedent(
        """
        logging.getLogger().setLevel(logging.DEBUG)
        log.info("the one line")
        provider.force_flush()
        provider.force_flush()  # anything our first flush caused would be in this one
        stats = exporter.stats()
        provider.shutdown()
        print(stats.received, stats.delivered, flush=True)
        """
    )
    result = run(script, target(emulator))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1", "1"]
    assert [r.content for r in emulator.records] == ["the one line"]


def test_zero_code_errors_reach_stderr(tmp_path, emulator):
    """Under `opentelemetry-instrument`, an app that configures no logging still learns that
    its token is refused: one line naming the status, and the exit summary of drops."""
    found = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert found, "opentelemetry-instrument is installed with the dev extra"
    app = tmp_path / "app.py"
    app.write_text("import logging\nlogging.getLogger().setLevel(logging.INFO)\n"
                   "logging.getLogger('app').info('hello')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))} | {
        "OTEL_LOGS_EXPORTER": "dynatrace", "OTEL_TRACES_EXPORTER": "none",
        "OTEL_METRICS_EXPORTER": "none", "DT_ENDPOINT": emulator.url,
        "DT_API_TOKEN": "dt0c01.WRONGTOKENWRONGTOKENWRONG.WRONGTOKENWRONGTOKENWRONGTOKENWRONGTOKEN"
                        "WRONGTOKENWRONGTOK",
    }
    result = subprocess.run([found, sys.executable, str(app)], env=env, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "answered 401" in result.stderr
    assert "records dropped: http_401 1" in result.stderr
    assert "WRONGTOKEN" not in result.stderr


def test_the_serverless_example_loses_nothing_when_killed_after_the_handler(emulator):
    """examples/serverless_handler.py: the process ends (`os._exit`) right after the handler
    returns, as a frozen function would; every record it logged is at Dynatrace."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    script = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(examples)!r})
        import serverless_handler
        answer = serverless_handler.handler({{"items": list(range(50))}})
        print(answer["processed"], answer["flushed"], flush=True)
        os._exit(0)
        """
    )
    result = run(script, target(emulator))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["50", "True"]
    assert sorted(r.attributes["item.id"] for r in emulator.records) == list(range(50))


def test_shutdown_against_a_hanging_server_reports_what_is_on_the_wire(make_records):
    """A server that takes the request and never answers: shutdown keeps its deadline and
    says the records are still in flight (not delivered, not silently lost)."""
    with DynatraceEmulator() as dt:
        dt.enqueue("logs", Reply(hang=True))
        exporter = DynatraceLogExporter(endpoint=dt.url, token=dt.token, timeout_s=30,
                                        shutdown_timeout_s=1)
        exporter.export(make_records(5))
        dt.wait_for_requests(1, timeout=10)
        exporter.shutdown()
        report = exporter.last_shutdown
        stats = exporter.stats()
    assert report is not None and report.in_flight == 5 and not report.drained
    assert stats.in_flight == 5 and stats.balanced


def test_a_new_exporter_in_the_same_process_claims_what_the_last_one_left(tmp_path,
                                                                       make_records):
    """Shutdown during an outage leaves the records in the spool (`left_in_spool`) and
    releases its lock; the next exporter in this process delivers them without new logs."""
    spool = str(tmp_path / "spool")
    with DynatraceEmulator() as dt:
        dt.enqueue("logs", *[Reply(503) for _ in range(1000)])
        first = DynatraceLogExporter(endpoint=dt.url, token=dt.token, spool_dir=spool,
                                     shutdown_timeout_s=0.5)
        first.export(make_records(40))
        first.shutdown()
        report = first.last_shutdown
        dt.reset()
        second = DynatraceLogExporter(endpoint=dt.url, token=dt.token, spool_dir=spool)
        assert second.force_flush(10_000)
        stats = second.stats()
        second.shutdown()
        delivered = len(dt.records)
    assert report is not None and report.left_in_spool + report.in_flight == 40
    assert delivered == 40 and stats.delivered == 40 and stats.possible_duplicates == 40
