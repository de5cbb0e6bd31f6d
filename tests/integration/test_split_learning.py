"""A 413 server with a fixed limit (the emulator's `max_request_bytes`): after one refusal the
channel knows the size and splits later bodies before sending them."""

from __future__ import annotations

from dt_exporter import DynatraceLogExporter
from dt_exporter.testing import DynatraceEmulator


def test_one_refusal_teaches_the_limit_for_every_later_batch(make_records):
    """Ten batches that each exceed the server's limit: one 413 in all, then every batch is
    split before it is sent (the old way paid a refused request per batch)."""
    with DynatraceEmulator() as dt:
        dt.max_request_bytes = 40_000
        exporter = DynatraceLogExporter(endpoint=dt.url, token=dt.token, compression="none",
                                        backoff_initial_s=0.01)
        first_batch = 0
        for batch in range(10):
            records = make_records(300, body=lambda i: "x" * 100,
                                   attributes=lambda i: {"n": 1000 + i})
            exporter.export(records)
            assert exporter.force_flush(10_000)
            if batch == 0:
                first_batch = len(dt.requests)
        statuses = [request.status for request in dt.requests]
        stats = exporter.stats()
        exporter.shutdown()
    learned, later = statuses[:first_batch], statuses[first_batch:]
    assert 413 in learned and 413 not in later
    parts = learned.count(204)  # how many pieces one batch must be cut into
    assert later == [204] * (parts * 9)
    assert stats.delivered == 3000 and stats.balanced and not stats.dropped
    assert len(dt.records) == 3000
