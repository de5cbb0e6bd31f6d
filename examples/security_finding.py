"""Send security findings to a custom OpenPipeline security-events endpoint.

How to run it (the endpoint name is the one configured in OpenPipeline, default my-scanner):

    export DT_ENDPOINT=https://{your-environment-id}.live.dynatrace.com
    export DT_API_TOKEN=dt0c01....   # an access token with openpipeline.events_security.custom
    python examples/security_finding.py my-scanner

A scanner sends its findings as a batch: `send()` queues them (many per request), `flush()`
waits for delivery, and `stats()` says what became of every one. Tenants that still have the
legacy `events.security` path are handled for you. It exits 0 when every finding was delivered.
"""

from __future__ import annotations

import sys
import time

from dt_exporter.events import SecurityEventsClient

FINDINGS = [
    ("CVE-2024-3094", "xz-utils backdoor", "CRITICAL", 10.0, "liblzma5"),
    ("CVE-2023-44487", "HTTP/2 rapid reset", "HIGH", 7.5, "nghttp2"),
    ("CVE-2023-4863", "libwebp heap overflow", "HIGH", 8.8, "libwebp7"),
]


def main() -> int:
    endpoint_name = sys.argv[1] if len(sys.argv) > 1 else "my-scanner"
    now_ms = int(time.time() * 1000)
    # Shape the objects as your OpenPipeline processing for this endpoint expects them.
    findings = [
        {
            "timestamp": now_ms,
            "event.type": "VULNERABILITY_FINDING",
            "finding.id": cve,
            "finding.title": title,
            "finding.severity": severity,
            "finding.score": score,
            "component.name": component,
            "object.name": "checkout:1.4.2",
            "product.name": "example-scanner",
        }
        for cve, title, severity, score, component in FINDINGS
    ]
    client = SecurityEventsClient(endpoint_name)  # DT_ENDPOINT, DT_API_TOKEN from the environment
    receipt = client.send(findings)
    delivered_in_time = client.flush(30)
    stats = client.stats()
    client.shutdown(0)
    print(f"queued {receipt.queued}, delivered {stats.delivered}, "
          f"dropped {dict(stats.dropped) or 0}")
    return 0 if delivered_in_time and stats.delivered == len(findings) else 1


if __name__ == "__main__":
    sys.exit(main())
