"""TLS against an emulator that plays an ActiveGate with a private CA (real HTTPS on 127.0.0.1)."""

from __future__ import annotations

import logging

from _support import FAST

from dt_exporter import DynatraceLogExporter


def test_verification_is_on_by_default(tls_emulator, make_records, caplog):
    """An untrusted certificate is a TLS error: retried, never delivered, logged as such."""
    dt, _ = tls_emulator
    exporter = DynatraceLogExporter(endpoint=dt.url, token=dt.token, retry_max_elapsed_s=0.3,
                                    **FAST)
    with caplog.at_level(logging.WARNING):
        exporter.export(make_records(3))
        assert exporter.force_flush(10_000)
    stats = exporter.stats()
    assert stats.delivered == 0 and stats.dropped == {"retry_exhausted": 3}
    assert stats.retries > 0
    assert "tls" in caplog.text
    assert dt.records == []
    exporter.shutdown()


def test_a_ca_bundle_makes_the_private_ca_trusted(tls_emulator, make_records):
    """DT_EXPORTER_CA_BUNDLE (ca_bundle=) is how an ActiveGate's private CA is trusted."""
    dt, ca_file = tls_emulator
    exporter = DynatraceLogExporter(endpoint=dt.url, token=dt.token, ca_bundle=str(ca_file),
                                    **FAST)
    exporter.export(make_records(3))
    assert exporter.force_flush(10_000)
    assert exporter.stats().delivered == 3
    assert len(dt.wait_for_records(3)) == 3
    exporter.shutdown()


def test_switching_verification_off_works_and_says_so_loudly(tls_emulator, make_records,
                                                              caplog):
    """The explicit switch delivers, and logs a warning naming its setting."""
    dt, _ = tls_emulator
    with caplog.at_level(logging.WARNING):
        exporter = DynatraceLogExporter(endpoint=dt.url, token=dt.token,
                                        insecure_skip_tls_verify=True, **FAST)
        exporter.export(make_records(2))
        assert exporter.force_flush(10_000)
    assert exporter.stats().delivered == 2
    assert "DT_EXPORTER_INSECURE_SKIP_TLS_VERIFY" in caplog.text
    exporter.shutdown()
