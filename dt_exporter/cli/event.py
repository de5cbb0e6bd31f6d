"""`dt-exporter event`: send one event to Dynatrace now, e.g. a deployment marker from CI.

    dt-exporter event --type CUSTOM_DEPLOYMENT --title "Deployed 1.4.2" \\
        --property version=1.4.2 --entity-selector 'type(SERVICE),entityName.equals(checkout)'
    dt-exporter event --security my-scanner --json '{"event.type": "VULNERABILITY_FINDING"}'

DT_ENDPOINT and DT_API_TOKEN say where to, as for the exporter. Prints one line (never the
token). Exit codes: 0 delivered; 2 configuration or usage error; 3 refused (by Dynatrace, or by
the client as invalid), so sending again will not help; 4 not delivered within --wait.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, TextIO

import orjson

from dt_exporter.errors import ConfigError
from dt_exporter.event_model import Event, EventType, InvalidEventError
from dt_exporter.events import EventResult, EventsClient, SecurityEventsClient

EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
EXIT_REJECTED: Final = 3
EXIT_UNDELIVERED: Final = 4
_EXIT_CODES: Final = {"delivered": EXIT_OK, "rejected": EXIT_REJECTED,
                      "undelivered": EXIT_UNDELIVERED}
_EVENT_ONLY: Final = ("type", "title", "entity_selector", "timeout")


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="send one event (Events API v2, or a custom security event) and wait for the answer",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--type", type=str.upper, choices=[t.value for t in EventType],
                        metavar="TYPE", help="event type, e.g. CUSTOM_DEPLOYMENT, CUSTOM_INFO")
    parser.add_argument("--title", help="event title (required for --type)")
    parser.add_argument("--property", action="append", default=[], metavar="KEY=VALUE",
                        help="an event property (a top-level field with --security); repeatable")
    parser.add_argument("--entity-selector", help="e.g. 'type(SERVICE),entityName(checkout)'")
    parser.add_argument("--timeout", type=int, metavar="MIN",
                        help="minutes the event stays open (1-360; Dynatrace's default is 15)")
    parser.add_argument("--security", metavar="ENDPOINT",
                        help="send a custom security event to this OpenPipeline endpoint instead")
    parser.add_argument("--json", metavar="OBJECT", help="the security event, a JSON object")
    parser.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                        help="how long to try to deliver (default 30)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the exporter's own log lines")


def run(args: argparse.Namespace, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    with _library_logs(args.verbose):
        try:
            if args.security is not None:
                result, what = _send_security(args)
            else:
                result, what = _send_event(args)
        except (ConfigError, InvalidEventError, _UsageError) as exc:
            print(f"dt-exporter event: {exc}", file=err)
            return EXIT_CONFIG
    print(_line(result, what), file=out if result.delivered else err)
    return _EXIT_CODES[result.outcome]


class _UsageError(ValueError):
    pass


def _send_event(args: argparse.Namespace) -> tuple[EventResult, str]:
    if args.json is not None:
        raise _UsageError("--json goes with --security; an event takes --type and --title")
    if args.type is None or args.title is None:
        raise _UsageError("--type and --title are required (or --security with --json)")
    event = Event(EventType(args.type), args.title, timeout_minutes=args.timeout,
                  entity_selector=args.entity_selector, properties=_properties(args.property))
    client = EventsClient(retry_max_elapsed_s=args.wait)
    try:
        result = client.send_now(event, args.wait)
    finally:
        client.shutdown(0)
    return result, f'{event.event_type.value} "{event.title}" to {_where(client.url)}'


def _send_security(args: argparse.Namespace) -> tuple[EventResult, str]:
    given = [f"--{name.replace('_', '-')}" for name in _EVENT_ONLY
             if getattr(args, name) is not None]
    if given:
        raise _UsageError(f"{', '.join(given)} cannot go with --security")
    if args.json is None:
        raise _UsageError("--security needs --json '{...}' (one JSON object)")
    try:
        document = orjson.loads(args.json)
    except orjson.JSONDecodeError as exc:
        raise _UsageError(f"--json is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise _UsageError("--json must be one JSON object")
    document.update(_properties(args.property))
    client = SecurityEventsClient(args.security, retry_max_elapsed_s=args.wait)
    try:
        result = client.send_now(document, args.wait)
    finally:
        client.shutdown(0)
    return result, f"security event to {_where(client.url)}"


def _properties(pairs: list[str]) -> dict[str, str]:
    properties: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise _UsageError(f"--property {pair!r}: expected KEY=VALUE")
        properties[key.strip()] = value
    return properties


def _where(url: str) -> str:
    """The URL without its scheme: enough to say where, and it never holds the token."""
    return url.split("://", 1)[-1]


def _line(result: EventResult, what: str) -> str:
    if result.delivered:
        ids = result.correlation_ids
        detail = f"HTTP {result.http_status}"
        if ids:
            detail += f", correlation id {', '.join(ids)}"
        if result.truncated:
            detail += ", cut to fit: " + ", ".join(f"{k} {v}" for k, v in result.truncated.items())
        return f"delivered {what} ({detail})"
    label = "rejected" if result.outcome == "rejected" else "not delivered"
    return f"{label}: {what}: {result.reason}"


@contextmanager
def _library_logs(verbose: bool) -> Iterator[None]:
    """The result line says what happened; the library's own lines only with --verbose."""
    logger = logging.getLogger("dt_exporter")
    level = logger.level
    if not verbose:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)
