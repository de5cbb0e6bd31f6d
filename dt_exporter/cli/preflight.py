"""`dt-exporter preflight CONFIG`: check a Collector or Fluent Bit config before starting it.

Reads an OpenTelemetry Collector YAML or a Fluent Bit `.conf` / `.yaml` with the variables of
the current environment, as the tool would, and refuses what would make the tool lose data once
started (the Collector only warns and `fluent-bit --dry-run` passes):
- a variable without a default that is unset or empty (an empty token: every request 401);
- a logs URL that is not Dynatrace's: for the Collector `endpoint` + `/v1/logs` must end in
  exactly one `/api/v2/otlp/v1/logs` (a DT_ENDPOINT that already ends in `/api/v2/otlp`, as
  Dynatrace's Collector page writes it, doubles the path: 404);
- a CA file that is missing or not PEM, TLS verification off, a token over plain http;
then, for every output that sends to Dynatrace, sends the same harmless request as
`dt-exporter check` (an empty OTLP request, or an empty JSON array for Fluent Bit's http output)
to the URL the tool will use, with its token and CA file. Nothing is ingested. No redirects.

Run it in the environment the Collector or Fluent Bit will run with. The token is never shown.

Exit status: 0 ok, 2 configuration (the file, a variable, a path, a CA file: nothing is sent),
3 network, 4 TLS, 5 token (401/403), 6 other HTTP answer. With several outputs, the first
failure's status.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TextIO

if TYPE_CHECKING:
    from dt_exporter.cli._shipper_config import Kind, Reading, Target

# The reader, `check`'s probe and the configuration are imported where they are used, not here:
# `dt-exporter preflight --help` (like every command's) imports no other command's module
# (tests/unit/test_cli_dispatch.py).

TOOL_NAMES: Final = {"collector": "OpenTelemetry Collector", "fluent-bit": "Fluent Bit"}
#: Proxy variables the Collector and Fluent Bit honour too; the probe goes the same way.
PROXY_VARIABLES: Final = (
    "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy",
    "NO_PROXY", "no_proxy",
)
_STATES: Final = {
    "set": "set",
    "default": "unset, default used",
    "empty": "SET BUT EMPTY",
    "unset": "NOT SET",
}
#: `check`'s sentences name dt_exporter's own variables; what they are called in a config,
#: by (tool, check's exit status: 3 network, 4 TLS, 5 token).
_CONFIG_HINTS: Final[dict[tuple[str, int], str]] = {
    ("collector", 4): "In this config the CA file is the exporter's tls.ca_file "
                      "(DT_CA_BUNDLE in the shipped configs), not DT_EXPORTER_CA_BUNDLE.",
    ("fluent-bit", 4): "In this config the CA file is the output's tls.ca_file "
                       "(DT_CA_BUNDLE in the shipped configs), not DT_EXPORTER_CA_BUNDLE.",
    ("collector", 3): "In this config host and port come from the exporter's endpoint "
                      "(DT_ENDPOINT in the shipped configs); the probe's timeout is --timeout.",
    ("fluent-bit", 3): "In this config host and port are the output's Host and Port (DT_HOST "
                       "in the shipped configs); the probe's timeout is --timeout.",
    ("collector", 5): "In this config the token is the exporter's Authorization header "
                      "(DT_API_TOKEN in the shipped configs).",
    ("fluent-bit", 5): "In this config the token is the output's Authorization Header "
                       "(DT_API_TOKEN in the shipped configs).",
}


def add_parser(subparsers: Any, name: str) -> None:
    parser = subparsers.add_parser(
        name,
        help="check a Collector or Fluent Bit config (variables, endpoint path, CA file, token) "
             "before starting it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", metavar="CONFIG", type=Path,
                        help="a Collector .yaml, or a Fluent Bit .conf or .yaml")
    parser.add_argument("--no-probe", action="store_true",
                        help="check the file and the environment only; send nothing")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                        help="per request of the probe (default 10)")


def run(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from dt_exporter.cli._shipper_config import ConfigFileError, read_config
    from dt_exporter.cli.check import EXIT_CONFIG, EXIT_OK
    from dt_exporter.config import environment

    env = environment()
    try:
        reading = read_config(args.config, env)
    except ConfigFileError as error:
        print(f"Pre-flight: {error}", file=out)
        return EXIT_CONFIG
    print_reading(args.config, reading, out)
    if reading.problems:
        count = len(reading.problems)
        print(f"\nResult: FAILED: configuration ({count} problem{'s' * (count > 1)}); nothing "
              "was sent. Fix the above, then run preflight again before starting.", file=out)
        return EXIT_CONFIG
    if args.no_probe:
        print("\nResult: OK (file and environment; --no-probe: nothing was sent)", file=out)
        return EXIT_OK
    proxy_env: dict[str, str] = {name: env[name] for name in PROXY_VARIABLES if name in env}
    code = EXIT_OK
    for target in reading.targets:
        result = probe_target(reading.kind, target, args.timeout, proxy_env, out)
        code = code or result
    print(f"\nResult: {'OK' if code == EXIT_OK else 'FAILED'}", file=out)
    return code


def print_reading(path: Path, reading: Reading, out: TextIO) -> None:
    """The tool, each variable's state (never its value), each target, problems, warnings."""
    from dt_exporter.cli.check import redact_token

    print(f"Pre-flight: {path} ({TOOL_NAMES[reading.kind]})", file=out)
    if reading.variables:
        print("Variables:", file=out)
        width = max(len(name) for name in reading.variables)
        for name, state in sorted(reading.variables.items()):
            print(f"  {name:<{width}}  {_STATES[state]}", file=out)
    for target in reading.targets:
        token = ("(none)" if target.authorization is None
                 else redact_token(target.authorization.reveal().split()[-1]))
        kind = "OTLP" if target.protocol == "otlp" else "JSON"
        print(f"Output {target.where}: {kind} to {target.url}", file=out)
        print(f"  token: {token}; CA file: {target.ca_file or '(system CA store)'}", file=out)
    if reading.warnings:
        print("Warnings (the config works, but):", file=out)
        for warning in reading.warnings:
            print(f"  - {warning}", file=out)
    if reading.problems:
        print("Problems:", file=out)
        for problem in reading.problems:
            print(f"  - {problem}", file=out)


def probe_target(
    kind: Kind, target: Target, timeout_s: float, proxy_env: dict[str, str], out: TextIO
) -> int:
    """`check`'s harmless request to the target's URL with its token and CA; the exit status."""
    from dt_exporter.cli.check import EXIT_CONFIG, probe
    from dt_exporter.config import ExporterConfig
    from dt_exporter.errors import ConfigError

    print(f"\n--- {target.where} ---", file=out)
    try:
        config = ExporterConfig.from_env(
            proxy_env,
            endpoint=target.url,
            token=target.authorization,
            protocol=target.protocol,
            ca_bundle=target.ca_file,
            timeout_s=timeout_s,
        )
    except ConfigError as error:  # names the setting, never the value
        print(f"  configuration error: {error}", file=out)
        return EXIT_CONFIG
    if config.logs_url != target.url:  # read_config refuses paths the exporter would rewrite
        print(f"  {target.url} is not a Dynatrace logs URL the probe can reach as is", file=out)
        return EXIT_CONFIG
    verdict = probe(config, out)
    print(f"  result: {verdict.headline}", file=out)
    if verdict.sentence:
        print(f"  {verdict.sentence}", file=out)
    hint = _CONFIG_HINTS.get((kind, verdict.code))
    if hint:
        print(f"  {hint}", file=out)
    return verdict.code
