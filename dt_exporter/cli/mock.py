"""`dt-exporter mock`: run the Dynatrace emulator in the foreground and show what it receives.

One line per accepted log record, as Dynatrace would show it: timestamp (UTC), loglevel,
content on one line, then `service.name` and `trace_id` when present. Events and security
events get a line each. Ctrl-C (or SIGTERM) stops it with exit code 0.
"""

from __future__ import annotations

import argparse
import io
import json
import signal
import sys
import threading
import time
from datetime import datetime, timezone
from types import FrameType
from typing import Any, Final, TextIO

from dt_exporter.testing import DynatraceEmulator, ReceivedRecord

CONTENT_WIDTH: Final = 100
#: The emulator runs until stopped: keep only the latest of what it received.
HISTORY: Final = 1000


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="run a local Dynatrace emulator and print what it receives",
        description=(
            "Run a local Dynatrace emulator on 127.0.0.1 (logs, OTLP logs, events, security "
            "events, OneAgent's local API) and print every record as Dynatrace would see it."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free)")
    parser.add_argument(
        "--token", help="the token to accept (default: a new random one, printed at start)"
    )
    parser.add_argument("--env-id", help="also serve paths under /e/ENV_ID")


def run(args: argparse.Namespace) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")  # records may hold any character
    printer = _Printer(sys.stdout)
    try:
        emulator = DynatraceEmulator(
            port=args.port,
            env_id=args.env_id,
            token=args.token,
            on_record=printer.record,
            on_event=printer.event,
            max_history=HISTORY,
        )
    except ValueError as error:
        print(f"dt-exporter mock: {error}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with emulator:
            base = emulator.url + (f"/e/{args.env_id}" if args.env_id else "")
            printer.line(f"Dynatrace emulator listening on {base}")
            printer.line(f"  DT_ENDPOINT={base}")
            printer.line(f"  DT_API_TOKEN={emulator.token}")
            printer.line("Press Ctrl-C to stop.")
            threading.Event().wait()
    except KeyboardInterrupt:
        printer.line("Stopped.")
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


class _Printer:
    """Writes whole lines from the emulator's threads without interleaving them."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()

    def record(self, record: ReceivedRecord) -> None:
        self.line(format_record(record))

    def event(self, kind: str, event: dict[str, Any]) -> None:
        self.line(format_event(kind, event))


def format_record(record: ReceivedRecord, now: float | None = None) -> str:
    """`2026-11-22T11:18:15.323Z WARN      content  service.name=... trace_id=...`"""
    if record.timestamp is not None:
        millis = record.timestamp
    else:  # Dynatrace would show the ingest time
        millis = int((time.time() if now is None else now) * 1000)
    stamp = datetime.fromtimestamp(millis / 1000, tz=timezone.utc)
    parts = [
        stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z",
        f"{record.loglevel:<9}",
        one_line(record.content),
    ]
    service = record.attributes.get("service.name")
    if service is not None:
        parts.append(f"service.name={service}")
    if record.trace_id:
        parts.append(f"trace_id={record.trace_id}")
    return "  ".join(parts)


def format_event(kind: str, event: dict[str, Any]) -> str:
    """One line for an Events API event or a security event."""
    if kind == "security":
        fields = {k: v for k, v in event.items() if k not in ("_endpoint", "_legacy")}
        text = json.dumps(fields, ensure_ascii=False, default=str)
        return f"SECURITY  {event.get('_endpoint')}  {one_line(text)}"
    return f"EVENT     {event.get('eventType')}  {one_line(str(event.get('title', '')))}"


def one_line(text: str, width: int = CONTENT_WIDTH) -> str:
    """Newlines shown as `⏎`, cut to `width` characters with `…`."""
    flat = text.replace("\r\n", "⏎").replace("\n", "⏎").replace("\r", "⏎")
    return flat if len(flat) <= width else flat[: width - 1] + "…"
