"""The `dt-exporter` command: one module per subcommand, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from collections.abc import Sequence
from typing import Final

from dt_exporter._version import __version__

#: subcommand -> (module under dt_exporter.cli, its one-line help for `dt-exporter --help`).
#: Only the module of the command being run is imported, so `dt-exporter send` never pays for
#: the OpenTelemetry SDK (demo) or the emulator (mock), and vice versa. Each help text is the one
#: its module's `add_parser` gives (tests/unit/test_cli_dispatch.py keeps them equal).
COMMANDS: Final[dict[str, tuple[str, str]]] = {
    "check": ("dt_exporter.cli.check",
              "print the effective configuration and test endpoint, TLS and token"),
    "demo": ("dt_exporter.cli.demo",
             "run a small instrumented workload and show what Dynatrace receives"),
    "event": ("dt_exporter.cli.event",
              "send one event (Events API v2, or a custom security event) and wait for the "
              "answer"),
    "mock": ("dt_exporter.cli.mock", "run a local Dynatrace emulator and print what it receives"),
    "preflight": ("dt_exporter.cli.preflight",
                  "check a Collector or Fluent Bit config (variables, endpoint path, CA file, "
                  "token) before starting it"),
    "send": ("dt_exporter.cli.send",
             "send log lines (JSON Lines, a JSON array or text; gzip ok) to Dynatrace"),
}


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand `argv` runs: its first non-option word, when that names one."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with `command`'s real subparser (its module imported) and a stub carrying only
    the help line for every other command."""
    parser = argparse.ArgumentParser(
        prog="dt-exporter",
        description="Ship OpenTelemetry data to Dynatrace, or emulate Dynatrace locally.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if name == command:
            importlib.import_module(module_name).add_parser(subparsers, name)
        else:
            subparsers.add_parser(name, help=help_text)
    return parser


def version_text() -> str:
    """What `dt-exporter --version` prints: the package version and the Python running it (the
    two facts a bug report needs first)."""
    return f"dt-exporter {__version__} (Python {platform.python_version()})"


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(chosen_command(argv)).parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        code: int = module.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
