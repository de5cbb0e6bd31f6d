"""The `dt-exporter` command: one module per subcommand, each with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Final

#: subcommand -> module under dt_exporter.cli; modules are imported only when listed in --help
#: or run, so `dt-exporter mock` never pays for the exporter and vice versa.
COMMANDS: Final[dict[str, str]] = {
    "check": "dt_exporter.cli.check",
    "demo": "dt_exporter.cli.demo",
    "event": "dt_exporter.cli.event",
    "mock": "dt_exporter.cli.mock",
    "send": "dt_exporter.cli.send",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dt-exporter",
        description="Ship OpenTelemetry data to Dynatrace, or emulate Dynatrace locally.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module_name in COMMANDS.items():
        importlib.import_module(module_name).add_parser(subparsers, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module = importlib.import_module(COMMANDS[args.command])
    try:
        code: int = module.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
