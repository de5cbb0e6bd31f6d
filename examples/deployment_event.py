"""Mark a deployment in Dynatrace from a CI pipeline (Events API v2, CUSTOM_DEPLOYMENT).

How to run it, as the last step of a deploy job:

    export DT_ENDPOINT=https://{your-environment-id}.live.dynatrace.com
    export DT_API_TOKEN=dt0c01....            # an access token with the events.ingest scope
    SERVICE_NAME=checkout RELEASE_VERSION=1.4.2 python examples/deployment_event.py

It exits 0 when Dynatrace took the event and 1 otherwise, so a failed marker fails the step.
The same from a shell: dt-exporter event --type CUSTOM_DEPLOYMENT --title "Deployed 1.4.2".
"""

from __future__ import annotations

import os
import sys

from dt_exporter.event_model import Event, EventType
from dt_exporter.events import EventsClient


def main() -> int:
    service = os.environ.get("SERVICE_NAME", "checkout")
    version = os.environ.get("RELEASE_VERSION", "1.4.2")
    event = Event(
        EventType.CUSTOM_DEPLOYMENT,
        f"Deployed {service} {version}",
        # Attach the marker to the service; without a selector it lands on the environment.
        entity_selector=f"type(SERVICE),entityName.equals({service})",
        properties={
            "deployment.name": service,
            "deployment.version": version,
            # Any CI system's run URL or id, so the marker links back to the pipeline run.
            "ci.pipeline.url": os.environ.get("CI_PIPELINE_URL", "unknown"),
            "ci.commit": os.environ.get("CI_COMMIT_SHA", "unknown"),
        },
    )
    client = EventsClient()  # DT_ENDPOINT, DT_API_TOKEN and DT_EXPORTER_* from the environment
    try:
        result = client.send_now(event, timeout_s=30)
    finally:
        client.shutdown(0)
    if result.delivered:
        print(f"deployment marker sent (correlation id {', '.join(result.correlation_ids)})")
        return 0
    print(f"deployment marker not sent ({result.outcome}): {result.reason}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
