"""`dt-exporter mock`: run the Dynatrace emulator in the foreground and show what it receives.

One line per accepted log record, as Dynatrace would show it: timestamp (UTC), loglevel,
content on one line, then `service.name` and `trace_id` when present. Events and security
events get a line each. Ctrl-C (or SIGTERM) stops it with exit code 0.

HTTPS, so a config with TLS on (a Collector's `tls.ca_file`, Fluent Bit's `tls On`) can point at
it: `--tls-cert`/`--tls-key` serve a certificate you have (it must name 127.0.0.1), or
`--tls-self-signed` makes a CA and a certificate for 127.0.0.1 and localhost with the `openssl`
command (a plain install has no Python package that can) and prints the CA file to trust.

OTLP decoding needs the `emulator` extra (`pip install 'dt_exporter[emulator]'`: the
OpenTelemetry protobuf classes). Without it the mock still serves the JSON, events and security
APIs, says so at start, and answers OTLP requests 501 with that sentence.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

from dt_exporter.testing import DynatraceEmulator, ReceivedRecord, Reply
from dt_exporter.testing._models import EndpointGroup  # the type of the hook overridden below

CONTENT_WIDTH: Final = 100
#: The emulator runs until stopped: keep only the latest of what it received.
HISTORY: Final = 1000
#: What OTLP decoding needs, and how to get it.
OTLP_MODULES: Final = ("google.protobuf", "opentelemetry.proto")
EMULATOR_EXTRA: Final = "pip install 'dt_exporter[emulator]'"
NO_OTLP: Final = (
    "OTLP is not available in this mock: decoding OTLP needs the OpenTelemetry protobuf "
    f"classes, which a plain install does not have; {EMULATOR_EXTRA}"
)
#: Validity of a --tls-self-signed certificate; it lives as long as the mock anyway.
SELF_SIGNED_DAYS: Final = 30


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="run a local Dynatrace emulator and print what it receives",
        description=(
            "Run a local Dynatrace emulator on 127.0.0.1 (logs, OTLP logs, events, security "
            "events, OneAgent's local API) and print every record as Dynatrace would see it. "
            "OTLP decoding needs the emulator extra: " + EMULATOR_EXTRA + " (without it, OTLP "
            "requests get 501 and everything else works)."
        ),
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free)")
    parser.add_argument(
        "--token", help="the token to accept (default: a new random one, printed at start)"
    )
    parser.add_argument("--env-id", help="also serve paths under /e/ENV_ID")
    tls = parser.add_argument_group(
        "HTTPS", "serve HTTPS, so configs with TLS on can point at the mock (default: http)"
    )
    tls.add_argument("--tls-cert", metavar="PEM", type=Path,
                     help="server certificate (chain) file; it must name 127.0.0.1 or localhost")
    tls.add_argument("--tls-key", metavar="PEM", type=Path,
                     help="private key of --tls-cert (default: in the --tls-cert file)")
    tls.add_argument("--tls-self-signed", action="store_true",
                     help="make a CA and a certificate for 127.0.0.1/localhost (needs the "
                          "openssl command) and print the CA file to trust")


def run(args: argparse.Namespace) -> int:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="backslashreplace")  # records may hold any character
    printer = _Printer(sys.stdout)
    with tempfile.TemporaryDirectory(prefix="dt-exporter-mock-") as scratch:  # 0700
        try:
            context, ca_file = server_context(args, Path(scratch))
        except MockSetupError as error:
            print(f"dt-exporter mock: {error}", file=sys.stderr)
            return 2
        otlp = otlp_available()
        try:
            emulator = (DynatraceEmulator if otlp else _NoOtlpEmulator)(
                port=args.port,
                env_id=args.env_id,
                token=args.token,
                on_record=printer.record,
                on_event=printer.event,
                max_history=HISTORY,
                ssl_context=context,
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
                if ca_file is not None:
                    printer.line(f"  CA file (trust it: DT_CA_BUNDLE / DT_EXPORTER_CA_BUNDLE / "
                                 f"tls.ca_file): {ca_file}")
                if not otlp:
                    printer.line(f"  {NO_OTLP}: OTLP requests are answered 501.")
                printer.line("Press Ctrl-C to stop.")
                threading.Event().wait()
        except KeyboardInterrupt:
            printer.line("Stopped.")
    return 0


class MockSetupError(Exception):
    """The mock cannot start as asked; the message says why and what to do."""


def otlp_available() -> bool:
    """Whether the OTLP protobuf classes the emulator decodes with can be imported."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in OTLP_MODULES)
    except ImportError:  # a parent package is missing
        return False


def server_context(args: argparse.Namespace, scratch: Path) -> tuple[ssl.SSLContext | None,
                                                                     Path | None]:
    """The server-side TLS context the options ask for (None: plain http), and the CA file to
    print for --tls-self-signed."""
    if args.tls_self_signed and (args.tls_cert or args.tls_key):
        raise MockSetupError("--tls-self-signed makes its own certificate: do not combine it "
                             "with --tls-cert/--tls-key")
    if args.tls_key and not args.tls_cert:
        raise MockSetupError("--tls-key needs --tls-cert")
    ca_file = None
    cert, key = args.tls_cert, args.tls_key
    if args.tls_self_signed:
        ca_file, cert, key = self_signed(scratch)
    if cert is None:
        return None, None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(cert), None if key is None else str(key))
    except (OSError, ssl.SSLError) as error:
        raise MockSetupError(f"cannot load the certificate {cert}"
                             f"{'' if key is None else f' with the key {key}'}: "
                             f"{error.__class__.__name__}: {error}") from None
    return context, ca_file


def self_signed(directory: Path) -> tuple[Path, Path, Path]:
    """A new CA and a server certificate for 127.0.0.1 and localhost signed by it, made with the
    `openssl` command in `directory` (private); returns (CA file, certificate, key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise MockSetupError("--tls-self-signed needs the openssl command on PATH (a plain "
                             "Python install cannot make certificates); install openssl, or "
                             "pass a certificate with --tls-cert/--tls-key")
    ca_key, ca_file = directory / "ca.key", directory / "ca.pem"
    key, request = directory / "server.key", directory / "server.csr"
    cert = directory / "server.pem"
    extensions = directory / "server.ext"
    extensions.write_text("basicConstraints=critical,CA:FALSE\n"
                          "keyUsage=critical,digitalSignature,keyEncipherment\n"
                          "extendedKeyUsage=serverAuth\n"
                          "subjectAltName=IP:127.0.0.1,DNS:localhost\n", encoding="ascii")
    days = str(SELF_SIGNED_DAYS)
    new_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    steps = [
        [openssl, "req", "-x509", *new_key, "-days", days, "-subj", "/CN=dt-exporter mock CA",
         "-keyout", str(ca_key), "-out", str(ca_file),
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        [openssl, "req", *new_key, "-subj", "/CN=127.0.0.1", "-keyout", str(key),
         "-out", str(request)],
        [openssl, "x509", "-req", "-in", str(request), "-CA", str(ca_file), "-CAkey",
         str(ca_key), "-CAcreateserial", "-days", days, "-out", str(cert),
         "-extfile", str(extensions)],
    ]
    for step in steps:
        # argv: openssl as found on PATH, fixed options and our own private paths; no shell.
        done = subprocess.run(step, capture_output=True, text=True, timeout=60,  # noqa: S603
                              check=False, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise MockSetupError(f"openssl {step[1]} failed: {done.stderr.strip()[-300:]}")
    for private in (ca_key, key):
        private.chmod(0o600)
    return ca_file, cert, key


class _NoOtlpEmulator(DynatraceEmulator):
    """The emulator without OTLP: every OTLP request is answered 501 with `NO_OTLP`, before
    any decoding is tried; the other endpoints behave as always."""

    def _take_reply(self, group: EndpointGroup) -> Reply | None:
        if group == "otlp":
            return Reply(501, body={"error": {"code": 501, "message": NO_OTLP}})
        return super()._take_reply(group)


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
