"""`dt-exporter` dispatch: `--help` lists every command, and a run imports only its own module."""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import platform
import subprocess
import sys

import pytest

from dt_exporter.cli import COMMANDS, build_parser, chosen_command, main, version_text


def _parser_from_every_module() -> argparse.ArgumentParser:
    """The parser as each command's own module builds its subparser."""
    parser = argparse.ArgumentParser(
        prog="dt-exporter",
        description="Ship OpenTelemetry data to Dynatrace, or emulate Dynatrace locally.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, _) in COMMANDS.items():
        importlib.import_module(module_name).add_parser(subparsers, name)
    return parser


def test_help_lists_every_command_with_its_one_line_help(capsys: pytest.CaptureFixture[str]):
    """`dt-exporter --help` names each command with the help line from the COMMANDS table."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for name, (_, help_text) in COMMANDS.items():
        assert f"{name} {help_text}" in out


def test_help_lines_match_what_each_module_says():
    """The table's help lines are the ones the modules' `add_parser` give: the top-level help
    reads the same whether built from stubs or from every module."""
    assert build_parser().format_help() == _parser_from_every_module().format_help()


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["send", "--help"], "send"),
        (["--help"], None),
        ([], None),
        (["-h", "mock"], "mock"),
        (["bogus", "send"], None),
        (["check", "--endpoint", "send"], "check"),
    ],
)
def test_the_chosen_command_is_the_first_word(argv: list[str], command: str | None):
    """The first non-option word picks the command; an unknown word picks none."""
    assert chosen_command(argv) == command


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_imports_only_its_own_module(command: str):
    """`dt-exporter <command> --help` imports that command's module and no other: `send` does
    not load the emulator (mock), and only `mock` loads `dt_exporter.testing`."""
    code = (
        "import json, sys\n"
        "from dt_exporter.cli import main\n"
        "try:\n"
        f"    main([{command!r}, '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    modules = set(json.loads(done.stdout.splitlines()[-1]))
    assert {m for m in modules if m.startswith("dt_exporter.cli.")} == {COMMANDS[command][0]}
    assert ("dt_exporter.testing" in modules) == (command == "mock")


def test_python_dash_m_help_still_works():
    """`python -m dt_exporter --help` and a command's `--help` exit 0 with usage text."""
    for argv in (["--help"], ["demo", "--help"], ["send", "--help"]):
        done = subprocess.run([sys.executable, "-m", "dt_exporter", *argv],
                              capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("usage: dt-exporter")


def test_version_names_the_installed_version_and_the_python():
    """`dt-exporter --version` prints the version the package is installed as (pyproject's,
    read from dt_exporter/_version.py) and the Python running it, exits 0, imports no command."""
    code = (
        "import json, sys\n"
        "from dt_exporter.cli import main\n"
        "try:\n"
        "    main(['--version'])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    first, modules = done.stdout.splitlines()[0], set(json.loads(done.stdout.splitlines()[-1]))
    installed = importlib.metadata.version("dt_exporter")
    assert first == f"dt-exporter {installed} (Python {platform.python_version()})"
    assert first == version_text()
    assert not {m for m in modules if m.startswith("dt_exporter.cli.")}
