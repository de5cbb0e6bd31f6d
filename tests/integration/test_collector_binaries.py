"""Real Collector and Fluent Bit binaries accept the configs in collector-config/.

These run only where a binary is installed: `otelcol`, `otelcol-contrib` or
`dynatrace-otel-collector` for `validate --config`, and `fluent-bit` for `--dry-run -c`. Where
none is available each test skips and says why. None of these tools is packaged for the
project's machines (Debian bookworm has no fluent-bit or otelcol package; PyPI and npm carry
no official build), so in CI they skip; run them on a machine that has the tools.
Nothing here talks to the network: validation and dry runs only read the files.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"
OTELCOL_CONFIGS = sorted((CONFIG_DIR / "otelcol").glob("*.yaml"))
FLUENT_BIT_CONFIGS = sorted(
    [*(CONFIG_DIR / "fluent-bit").glob("*.conf"), *(CONFIG_DIR / "fluent-bit").glob("*.yaml")]
)

COLLECTOR_BINARIES = ("otelcol", "otelcol-contrib", "dynatrace-otel-collector")
#: The official Fluent Bit packages install here, which is not on PATH by default.
FLUENT_BIT_PACKAGE_PATH = Path("/opt/fluent-bit/bin/fluent-bit")
#: Component types the Collector configs use; a build without them cannot load the configs.
REQUIRED_COMPONENTS = {
    "receivers": {"otlp"},
    "processors": {"memory_limiter", "resourcedetection", "batch"},
    "exporters": {"otlphttp"},
    "extensions": {"file_storage", "health_check"},
}
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
        argv,
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def _component_names(entries: list[Any]) -> set[str]:
    # `components` lists plain names in older releases and {name: ..., stability: ...} in newer.
    return {e["name"] if isinstance(e, dict) else str(e) for e in entries or []}


def _missing_components(binary: str, tmp_path: Path) -> set[str] | None:
    """Component types the build lacks, or None when it cannot list them."""
    result = _run([binary, "components"], dict(os.environ), tmp_path)
    if result.returncode != 0:
        return None
    try:
        listing = yaml.safe_load(result.stdout)
    except yaml.YAMLError:
        return None
    if not isinstance(listing, dict):
        return None
    missing: set[str] = set()
    for kind, needed in REQUIRED_COMPONENTS.items():
        have = _component_names(listing.get(kind, []))
        if kind == "exporters":
            have |= {"otlphttp"} if "otlp_http" in have else set()
        missing |= {f"{kind}/{name}" for name in needed - have}
    return missing


@pytest.mark.parametrize("binary", COLLECTOR_BINARIES)
@pytest.mark.parametrize("config", OTELCOL_CONFIGS, ids=_ids(OTELCOL_CONFIGS))
def test_collector_validates_config(binary: str, config: Path, tmp_path: Path) -> None:
    """`<collector> validate --config` accepts each Collector config."""
    path = shutil.which(binary)
    if path is None:
        pytest.skip(
            f"no {binary} binary on PATH: the OpenTelemetry Collector is not packaged for this "
            "machine (not in Debian, PyPI or npm); install it to run `validate --config`"
        )
    missing = _missing_components(path, tmp_path)
    if missing:
        pytest.skip(f"{binary} lacks components the config needs: {sorted(missing)}")

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
    result = _run([path, "validate", "--config", str(config)], env, tmp_path)
    assert result.returncode == 0, (
        f"{binary} validate rejected {config.name}:\n{result.stdout}\n{result.stderr}"
    )


def _fluent_bit() -> str | None:
    found = shutil.which("fluent-bit")
    if found:
        return found
    if FLUENT_BIT_PACKAGE_PATH.is_file() and os.access(FLUENT_BIT_PACKAGE_PATH, os.X_OK):
        return str(FLUENT_BIT_PACKAGE_PATH)
    return None


@pytest.mark.parametrize("config", FLUENT_BIT_CONFIGS, ids=_ids(FLUENT_BIT_CONFIGS))
def test_fluent_bit_dry_run_accepts_config(config: Path, tmp_path: Path) -> None:
    """`fluent-bit --dry-run -c` accepts each Fluent Bit config, classic and YAML."""
    binary = _fluent_bit()
    if binary is None:
        pytest.skip(
            f"no fluent-bit binary on PATH (nor {FLUENT_BIT_PACKAGE_PATH}): Fluent Bit is not "
            "packaged for this machine (not in Debian bookworm, PyPI or npm); install it to run "
            "`fluent-bit --dry-run -c`"
        )
    env = {**os.environ, **PLACEHOLDER_ENV, "DT_CA_BUNDLE": str(tmp_path / "unused-ca.pem")}
    version = _run([binary, "--version"], env, tmp_path).stdout.strip()
    result = _run([binary, "--dry-run", "-c", str(config)], env, tmp_path)
    assert result.returncode == 0, (
        f"{version}: --dry-run rejected {config.name}:\n{result.stdout}\n{result.stderr}"
    )
