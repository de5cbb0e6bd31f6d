"""The spool is a safety net, never the reason a record is lost: with writes failing, every
record Dynatrace can take is delivered from memory, counted, balanced."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import orjson

from dt_exporter import DynatraceLogExporter
from dt_exporter.testing import DynatraceEmulator


def test_a_removed_spool_directory_degrades_to_memory(tmp_path, make_records):
    """The spool directory disappears under a running exporter: 2,000 of 2,000 delivered,
    `spool_write_failed` says how many went without a file."""
    spool = tmp_path / "spool"
    with DynatraceEmulator() as dt:
        exporter = DynatraceLogExporter(endpoint=dt.url, token=dt.token, spool_dir=str(spool))
        exporter.export(make_records(500))
        assert exporter.force_flush(10_000)
        shutil.rmtree(spool)
        for _ in range(3):
            exporter.export(make_records(500))
        assert exporter.force_flush(10_000)
        stats = exporter.stats()
        exporter.shutdown()
        delivered = len(dt.records)
    assert delivered == 2000
    assert stats.delivered == 2000 and stats.balanced and not stats.dropped
    assert stats.spool_write_failed == 1500


def test_a_file_size_limit_degrades_to_memory(tmp_path):
    """Under RLIMIT_FSIZE (a full disk's cousin) no body fits a file: all delivered anyway, the
    process is not killed by SIGXFSZ, no traceback."""
    script = textwrap.dedent(
        """
        import resource, sys, time, orjson
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
        from dt_exporter import DynatraceLogExporter

        memory = InMemoryLogRecordExporter()
        provider = LoggerProvider(shutdown_on_exit=False)
        provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
        for i in range(2000):
            provider.get_logger("app").emit(body=f"line {i}", timestamp=time.time_ns())
        records = list(memory.get_finished_logs())
        exporter = DynatraceLogExporter()
        resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))
        for start in range(0, 2000, 500):
            exporter.export(records[start:start + 500])
        ok = exporter.force_flush(20_000)
        stats = exporter.stats()
        exporter.shutdown()
        print(orjson.dumps({"ok": ok, "delivered": stats.delivered, "balanced": stats.balanced,
                            "failed": stats.spool_write_failed,
                            "dropped": dict(stats.dropped)}).decode())
        """
    )
    with DynatraceEmulator() as dt:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))} | {
            "DT_ENDPOINT": dt.url, "DT_API_TOKEN": dt.token,
            "DT_EXPORTER_SPOOL_DIR": str(tmp_path / "spool")}
        result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                                text=True, timeout=60, check=False)
        delivered = len(dt.records)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    answer = orjson.loads(result.stdout)
    assert answer == {"ok": True, "delivered": 2000, "balanced": True, "failed": 2000,
                      "dropped": {}}
    assert delivered == 2000
    assert "spool" in result.stderr  # one rate-limited warning says why


def test_a_bad_spool_setting_from_the_environment_runs_without_spool(tmp_path, monkeypatch,
                                                                   make_records, caplog):
    """DT_EXPORTER_SPOOL_DIR naming a file (zero-code): one error, no exception, delivery
    from memory; the same value passed by keyword raises ConfigError naming the setting."""
    import pytest

    from dt_exporter import ConfigError

    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("x")
    with DynatraceEmulator() as dt:
        monkeypatch.setenv("DT_ENDPOINT", dt.url)
        monkeypatch.setenv("DT_API_TOKEN", dt.token)
        monkeypatch.setenv("DT_EXPORTER_SPOOL_DIR", str(not_a_directory))
        exporter = DynatraceLogExporter()
        exporter.export(make_records(10))
        assert exporter.force_flush(10_000)
        stats = exporter.stats()
        exporter.shutdown()
        assert len(dt.records) == 10
    assert stats.delivered == 10 and stats.balanced
    assert any("DT_EXPORTER_SPOOL_DIR" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="DT_EXPORTER_SPOOL_DIR"):
        DynatraceLogExporter(endpoint="http://127.0.0.1:9", token="dt0c01.T",
                             spool_dir=str(not_a_directory))
