"""Real Collector and Fluent Bit binaries accept the configs in collector-config/ (opt-in).

Marked `real_binaries`: deselected by default (pyproject's addopts), because neither tool can
be installed on the project's machines (no Debian bookworm, PyPI or npm package of either).
Run them where the tools are, with

    pytest -m real_binaries tests/integration/test_collector_binaries.py

Opted in, a missing binary, or a Collector build without a component a config uses, FAILS the
test with what to install: a skipped test would pass silently. The binaries are found on PATH
(`otelcol-contrib`, `dynatrace-otel-collector`, `otelcol`; `fluent-bit`, or the packages'
/opt/fluent-bit/bin/fluent-bit), or given with OTELCOL_BIN / FLUENT_BIT_BIN.
Nothing here talks to the network: `validate --config` and `--dry-run -c` only read the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.real_binaries

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"
OTELCOL_CONFIGS = sorted((CONFIG_DIR / "otelcol").glob("*.yaml"))
FLUENT_BIT_DIR = CONFIG_DIR / "fluent-bit"
FLUENT_BIT_CONFIGS = sorted(
    p
    for p in [*FLUENT_BIT_DIR.glob("*.conf"), *FLUENT_BIT_DIR.glob("*.yaml")]
    if not p.name.startswith("parsers-")  # loaded by the main files, not a config of its own
)

#: Tried in this order; contrib and the Dynatrace distribution have every component used.
COLLECTOR_BINARIES = ("otelcol-contrib", "dynatrace-otel-collector", "otelcol")
#: The official Fluent Bit packages install here, which is not on PATH by default.
FLUENT_BIT_PACKAGE_PATH = Path("/opt/fluent-bit/bin/fluent-bit")
COMPONENT_KINDS = ("receivers", "processors", "exporters", "extensions")
#: Placeholders only: validation and dry runs never connect anywhere.
PLACEHOLDER_ENV = {
    "DT_API_TOKEN": "placeholder-not-a-token",
    "DT_HOST": "abc12345.live.dynatrace.com",
    "DT_ENV_ID": "abc12345",
}
TIMEOUT_S = 60


def _ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False,
        stdin=subprocess.DEVNULL,
    )


def _collector() -> str:
    """The Collector binary to use, or a failure that says how to provide one."""
    given = os.environ.get("OTELCOL_BIN")
    if given:
        if not (Path(given).is_file() and os.access(given, os.X_OK)):
            pytest.fail(f"OTELCOL_BIN={given} is not an executable file")
        return given
    for name in COLLECTOR_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(
        f"-m real_binaries needs an OpenTelemetry Collector: none of {COLLECTOR_BINARIES} is on "
        "PATH and OTELCOL_BIN is not set. Install otelcol-contrib or the Dynatrace distribution "
        "(dynatrace-otel-collector), or deselect these tests (the default)."
    )


def _fluent_bit() -> str:
    """The Fluent Bit binary to use, or a failure that says how to provide one."""
    given = os.environ.get("FLUENT_BIT_BIN")
    candidates = [given] if given else [shutil.which("fluent-bit"), str(FLUENT_BIT_PACKAGE_PATH)]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    where = f"FLUENT_BIT_BIN={given}" if given else (
        f"fluent-bit on PATH or {FLUENT_BIT_PACKAGE_PATH}")
    pytest.fail(f"-m real_binaries needs Fluent Bit: no executable {where}. Install Fluent Bit "
                "(the configs are written for 5.1.1), or deselect these tests (the default).")


def _component_names(entries: list[Any]) -> set[str]:
    # `components` lists plain names in older releases and {name: ..., stability: ...} in newer.
    return {e["name"] if isinstance(e, dict) else str(e) for e in entries or []}


def _used_components(config: Path) -> dict[str, set[str]]:
    """The component types a config uses, by kind (`otlp_http/dynatrace` -> `otlp_http`)."""
    document = yaml.safe_load(config.read_text(encoding="utf-8"))
    return {kind: {str(n).split("/", 1)[0] for n in document.get(kind) or {}}
            for kind in COMPONENT_KINDS}


@pytest.mark.parametrize("config", OTELCOL_CONFIGS, ids=_ids(OTELCOL_CONFIGS))
def test_collector_validates_config(config: Path, tmp_path: Path) -> None:
    """`<collector> validate --config` accepts each Collector config, on a build that has every
    component the config uses (a build without one fails the test, naming what is missing)."""
    binary = _collector()
    listing = _run([binary, "components"], dict(os.environ), tmp_path)
    assert listing.returncode == 0, f"{binary} components failed:\n{listing.stderr}"
    have = yaml.safe_load(listing.stdout)
    missing = sorted(
        f"{kind}/{name}"
        for kind, needed in _used_components(config).items()
        for name in needed - _component_names(have.get(kind, []))
    )
    assert not missing, (
        f"{binary} lacks components {config.name} uses: {missing}; use otelcol-contrib or the "
        "Dynatrace distribution (a core build has no file_storage, health_check or "
        "resourcedetection), or a release that knows otlp_http (v0.144+; see the file's header)"
    )

    import trustme  # only needed here: a real PEM CA file for DT_CA_BUNDLE

    ca_file = tmp_path / "activegate-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca_file))
    endpoint = (
        "https://activegate.example.invalid:9999/e/abc12345"
        if config.stem == "activegate"
        else "https://abc12345.live.dynatrace.com"
    )
    env = {
        **os.environ,
        **PLACEHOLDER_ENV,
        "DT_ENDPOINT": endpoint,
        "DT_CA_BUNDLE": str(ca_file),
        "DT_COLLECTOR_STORAGE_DIR": str(tmp_path / "file_storage"),
    }
    result = _run([binary, "validate", "--config", str(config)], env, tmp_path)
    assert result.returncode == 0, (
        f"{binary} validate rejected {config.name}:\n{result.stdout}\n{result.stderr}"
    )


@pytest.mark.parametrize("config", FLUENT_BIT_CONFIGS, ids=_ids(FLUENT_BIT_CONFIGS))
def test_fluent_bit_dry_run_accepts_config(config: Path, tmp_path: Path) -> None:
    """`fluent-bit --dry-run -c` accepts each Fluent Bit config, classic and YAML, with the
    parsers file it names found beside it."""
    binary = _fluent_bit()
    env = {**os.environ, **PLACEHOLDER_ENV, "DT_CA_BUNDLE": str(tmp_path / "unused-ca.pem")}
    version = _run([binary, "--version"], env, tmp_path).stdout.strip()
    result = _run([binary, "--dry-run", "-c", str(config)], env, tmp_path)
    assert result.returncode == 0, (
        f"{version}: --dry-run rejected {config.name}:\n{result.stdout}\n{result.stderr}"
    )
