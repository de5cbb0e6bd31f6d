"""Delivery that survives outages, crashes and forks, against the emulator over real HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _support import FAST
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.resources import Resource

from dt_exporter import DynatraceLogExporter
from dt_exporter.testing import DynatraceEmulator, Reply


def ids(records) -> list[int]:
    return sorted(r.attributes["test.id"] for r in records)


def test_outage_longer_than_the_sdk_queue_loses_nothing(emulator):
    """20,000 records through the SDK's batch processor (queue 2,048) during a 503 outage of
    about a second all arrive: export() never blocks, so the SDK's queue never overflows."""
    emulator.enqueue("logs", *[Reply(503) for _ in range(40)])
    exporter = DynatraceLogExporter(endpoint=emulator.url, token=emulator.token, **FAST)
    provider = LoggerProvider(resource=Resource.create({"service.name": "outage"}),
                              shutdown_on_exit=False)
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=50))
    logger = provider.get_logger("tests")
    for i in range(20_000):
        logger.emit(severity_number=SeverityNumber.INFO, body=f"r{i}", attributes={"test.id": i})
        if i % 100 == 99:
            time.sleep(0.01)  # at most ~10,000 records/s: the outage, not the burst, is tested
    provider.force_flush()
    assert exporter.force_flush(30_000)
    stats = exporter.stats()
    provider.shutdown()
    assert stats.balanced and stats.dropped == {}, stats
    assert stats.delivered == 20_000 and stats.retries >= 40
    assert ids(emulator.wait_for_records(20_000, timeout=10)) == list(range(20_000))


CHILD = textwrap.dedent(
    """
    import sys, time
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
    from dt_exporter import DynatraceLogExporter

    url, token, spool, first, count = sys.argv[1:6]
    memory = InMemoryLogRecordExporter()
    provider = LoggerProvider(shutdown_on_exit=False)
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    logger = provider.get_logger("child")
    for i in range(int(first), int(first) + int(count)):
        logger.emit(body=f"r{i}", attributes={"test.id": i})
    exporter = DynatraceLogExporter(endpoint=url, token=token, spool_dir=spool,
                                    backoff_initial_s=0.05, backoff_max_s=0.1)
    for start in range(0, int(count), 100):
        exporter.export(memory.get_finished_logs()[start:start + 100])
    print("exported", flush=True)
    if sys.argv[6] == "hang":
        time.sleep(600)
    ok = exporter.force_flush(20_000)
    stats = exporter.stats()
    print("stats", stats.delivered, stats.possible_duplicates, stats.balanced, ok, flush=True)
    exporter.shutdown()
    """
)


def run_child(tmp_path: Path, dt: DynatraceEmulator, spool: Path, first: int, count: int,
              mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return subprocess.Popen(
        [sys.executable, str(script), dt.url, dt.token, str(spool), str(first), str(count), mode],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_kill_9_mid_outage_then_a_new_process_delivers_everything(tmp_path, emulator):
    """Records spooled by a process killed with SIGKILL during an outage are delivered by the
    next process using the same spool directory, and counted as possible duplicates."""
    spool = tmp_path / "spool"
    emulator.enqueue("logs", *[Reply(503) for _ in range(100_000)])
    victim = run_child(tmp_path, emulator, spool, 0, 500, "hang")
    assert victim.stdout is not None
    assert victim.stdout.readline().strip() == "exported"
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=10)  # reap it and close its pipes
    assert list(spool.glob("*.body")), "the spool holds the undelivered bodies"
    emulator.reset()  # the outage ends
    survivor = run_child(tmp_path, emulator, spool, 1000, 10, "flush")
    out, err = survivor.communicate(timeout=60)
    assert survivor.returncode == 0, err
    delivered, duplicates, balanced, flushed = out.split("stats", 1)[1].split()
    assert (int(delivered), balanced, flushed) == (510, "True", "True")
    assert int(duplicates) == 500
    # At least once: the victim's last request may still be in the emulator's hands when it
    # dies and be answered after the outage ends (`reset`); those records then arrive twice,
    # and every record that does was announced as a possible duplicate.
    received = ids(emulator.records)
    assert sorted(set(received)) == [*range(500), *range(1000, 1010)]
    twice = len(received) - len(set(received))
    assert twice <= int(duplicates) and all(received.count(i) <= 2 for i in range(500))
    assert not list(spool.glob("*.body")), "delivered bodies are removed from the spool"


def test_corrupt_spool_files_are_skipped_and_counted(tmp_path, emulator):
    """A torn file left by a dead process is set aside and counted; the exporter still works."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (spool / "12345-deadbeef.lock").write_text("")
    (spool / "12345-deadbeef-000000000000.body").write_bytes(b"DTB1{\"route\": \"logs\", tor")
    exporter = DynatraceLogExporter(endpoint=emulator.url, token=emulator.token, spool_dir=spool,
                                    **FAST)
    stats = exporter.stats()
    assert stats.dropped == {"spool_corrupt": 1} and stats.balanced
    assert len(list(spool.glob("*.corrupt"))) == 1
    exporter.shutdown()


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
def test_forked_child_does_not_resend_the_parents_queue(emulator, make_records):
    """After fork the child has an empty queue and its own sender; each record arrives once."""
    emulator.enqueue("logs", Reply(503))
    exporter = DynatraceLogExporter(endpoint=emulator.url, token=emulator.token,
                                    backoff_initial_s=0.5, backoff_max_s=0.5, timeout_s=2.0)
    exporter.export(make_records(10))
    time.sleep(0.2)  # the parent's body has met the 503 and waits in backoff
    child_records = make_records(5, attributes=lambda i: {"test.id": 100 + i})
    pid = os.fork()
    if pid == 0:  # the child
        code = 1
        try:
            exporter.export(child_records)
            flushed = exporter.force_flush(10_000)
            stats = exporter.stats()
            code = 0 if flushed and stats.received == 5 and stats.delivered == 5 else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert exporter.force_flush(10_000)
    assert exporter.stats().delivered == 10
    assert ids(emulator.records) == [*range(10), *range(100, 105)]
    exporter.shutdown()


def test_stats_show_queue_depth_age_and_spool_during_an_outage(tmp_path, emulator, make_records):
    """While the backend is down the snapshot shows what waits: records, bytes, age, spool."""
    emulator.enqueue("logs", *[Reply(503) for _ in range(1000)])
    exporter = DynatraceLogExporter(endpoint=emulator.url, token=emulator.token,
                                    spool_dir=tmp_path / "spool", backoff_initial_s=5.0,
                                    backoff_max_s=5.0, max_request_bytes=2048)
    exporter.export(make_records(40, timestamp_ns=time.time_ns() - 3 * 10**9))
    time.sleep(0.2)
    stats = exporter.stats()
    assert stats.in_flight + stats.queued_records == 40 and stats.queued_records > 0
    assert stats.queued_bytes > 0 and stats.spool_bytes >= stats.queued_bytes
    assert stats.oldest_queued_age_s >= 3.0
    assert stats.balanced
    exporter.shutdown(timeout_millis=100)
    assert exporter.stats().dropped == {"left_in_spool": 40}
