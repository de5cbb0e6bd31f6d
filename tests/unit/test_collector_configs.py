"""The shipped Collector and Fluent Bit configurations (collector-config/) keep their promises.

What is checked is what collector-config/README.md promises: the Dynatrace endpoints, the token
only ever as an environment placeholder, batches under Dynatrace's limits, bounded retries that
end well before Dynatrace's 24 h age limit, disk-backed queues, TLS verification, and agreement
with the settings a real Fluent Bit 5.1.1 used (tests/fixtures/fluent-bit-5.1.1/).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dt_exporter.limits import (
    DEFAULT_OTLP_REQUEST_BYTES,
    LOGS_MAX_RECORDS_PER_REQUEST,
    MAX_RECORD_AGE_NS,
    STALE_MARGIN_NS,
)
from dt_exporter.testing._interpret import TIMESTAMP_KEYS  # Dynatrace's timestamp key list

REPO = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO / "collector-config"
OTELCOL_DIR = CONFIG_DIR / "otelcol"
FLUENT_BIT_DIR = CONFIG_DIR / "fluent-bit"
# Real Fluent Bit 5.1.1 captures, kept in the repository (provenance: tests/fixtures/.../README.md).
FIXTURES_DIR = REPO / "tests" / "fixtures" / "fluent-bit-5.1.1"

OTELCOL_FILES = sorted(OTELCOL_DIR.glob("*.yaml"))
#: Gateways listen on every interface and queue on disk; the agent listens on localhost only.
OTELCOL_GATEWAYS = [OTELCOL_DIR / "activegate.yaml", OTELCOL_DIR / "saas.yaml"]
OTELCOL_AGENT = OTELCOL_DIR / "agent.yaml"
#: Fluent Bit main configurations; parsers-*.conf are parser definitions they load.
FLUENT_BIT_FILES = sorted(
    p
    for p in [*FLUENT_BIT_DIR.glob("*.conf"), *FLUENT_BIT_DIR.glob("*.yaml")]
    if not p.name.startswith("parsers-")
)
FLUENT_BIT_PARSERS = FLUENT_BIT_DIR / "parsers-json.conf"
ALL_CONFIG_FILES = sorted(p for p in CONFIG_DIR.rglob("*") if p.is_file())

#: Both names of the Collector's OTLP/HTTP exporter (renamed in v0.144, old name still works).
OTLP_HTTP_TYPES = frozenset({"otlphttp", "otlp_http"})
#: The byte cap on a request must leave this much headroom below Dynatrace's OTLP limit.
OTLP_HEADROOM = 0.95
#: Records per second the gateway queue's outage arithmetic is written for (the comment's rate).
GATEWAY_RATE_RECORDS_S = 500
#: Retry budgets must end this long before Dynatrace discards records as too old (24 h).
MAX_RETRY_WINDOW_S = (MAX_RECORD_AGE_NS - STALE_MARGIN_NS) / 1e9
#: What a real Dynatrace token looks like (`dt0c01.` + public part + `.` + secret).
REAL_TOKEN_RE = re.compile(r"dt0[a-z][0-9]{2}\.")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(CONFIG_DIR)) for p in paths]


# --------------------------------------------------------------------------------------------
# Fluent Bit: a parser for the classic format and a normaliser for the YAML format. Both give
# {"service": Props, "inputs": [Props], "filters": [Props], "outputs": [Props]}, where Props maps
# a lower-cased key to its values in order (keys such as Header may repeat).
# --------------------------------------------------------------------------------------------

Props = dict[str, list[str]]
FluentBitConfig = dict[str, Any]

_SECTION_RE = re.compile(r"^\[(?P<name>[^\]]+)\]$")
_SECTIONS = {"INPUT": "inputs", "FILTER": "filters", "OUTPUT": "outputs"}
_TRUE_WORDS = frozenset({"on", "true", "yes"})
_FALSE_WORDS = frozenset({"off", "false", "no"})


class FluentBitSyntaxError(ValueError):
    """The classic-format text is not something Fluent Bit would load."""


def parse_classic(text: str, *, parsers_file: bool = False) -> FluentBitConfig:
    """Parse Fluent Bit's classic format: [SECTION]s, indented `key value` lines, # comments.

    A parsers file (`parsers_file=True`) holds [PARSER] sections only, collected in "parsers".
    """
    config: FluentBitConfig = {
        "service": {}, "inputs": [], "filters": [], "outputs": [], "parsers": [],
    }
    sections = {"PARSER": "parsers"} if parsers_file else _SECTIONS
    current: Props | None = None
    seen_service = False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        header = _SECTION_RE.match(line)
        if header:
            name = header["name"].strip().upper()
            if name == "SERVICE" and not parsers_file:
                if seen_service:
                    raise FluentBitSyntaxError(f"line {lineno}: second [SERVICE] section")
                seen_service = True
                current = config["service"]
            elif name in sections:
                current = {}
                config[sections[name]].append(current)
            else:
                raise FluentBitSyntaxError(f"line {lineno}: unknown section [{name}]")
            continue
        if line.startswith("@"):
            raise FluentBitSyntaxError(f"line {lineno}: directives such as @INCLUDE are not used")
        if current is None:
            raise FluentBitSyntaxError(f"line {lineno}: entry outside any section")
        if not raw[:1].isspace():
            raise FluentBitSyntaxError(f"line {lineno}: entries in a section must be indented")
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise FluentBitSyntaxError(f"line {lineno}: {parts[0]!r} has no value")
        key, value = parts
        current.setdefault(key.lower(), []).append(value.strip())
    if not parsers_file:
        del config["parsers"]
    return config


def _yaml_scalar(value: object) -> str:
    if isinstance(value, bool):  # YAML 1.1 reads on/off/true/false as booleans
        return "on" if value else "off"
    if isinstance(value, dict | list) or value is None:
        raise TypeError(f"unexpected nested value {value!r}")
    return str(value)


def _yaml_props(mapping: dict[str, Any]) -> Props:
    props: Props = {}
    for key, value in mapping.items():
        values = value if isinstance(value, list) else [value]
        props[str(key).lower()] = [_yaml_scalar(v) for v in values]
    return props


def normalize_yaml(doc: dict[str, Any]) -> FluentBitConfig:
    """Bring a Fluent Bit YAML document into the shape parse_classic returns."""
    unknown = set(doc) - {"service", "pipeline"}
    if unknown:
        raise ValueError(f"unexpected top-level sections {sorted(unknown)}")
    pipeline = doc.get("pipeline") or {}
    return {
        "service": _yaml_props(doc.get("service") or {}),
        "inputs": [_yaml_props(p) for p in pipeline.get("inputs") or []],
        "filters": [_yaml_props(p) for p in pipeline.get("filters") or []],
        "outputs": [_yaml_props(p) for p in pipeline.get("outputs") or []],
    }


def load_fluent_bit(path: Path) -> FluentBitConfig:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".conf":
        return parse_classic(text)
    return normalize_yaml(yaml.safe_load(text))


def canonical(value: str) -> str:
    """Fluent Bit reads On/true/yes alike; compare such values by meaning, others verbatim."""
    lowered = value.strip().lower()
    if lowered in _TRUE_WORDS:
        return "on"
    if lowered in _FALSE_WORDS:
        return "off"
    return value.strip()


def canonical_config(config: FluentBitConfig) -> FluentBitConfig:
    def props(p: Props) -> Props:
        return {k: [canonical(v) for v in vs] for k, vs in p.items()}

    return {
        "service": props(config["service"]),
        **{name: [props(p) for p in config[name]] for name in ("inputs", "filters", "outputs")},
    }


def one(props: Props, key: str) -> str:
    values = props.get(key)
    assert values is not None, f"{key} is not set"
    assert len(values) == 1, f"{key} is set {len(values)} times"
    return values[0]


def headers(props: Props) -> dict[str, str]:
    """`Header Name value` lines as {name (lower-cased): value}."""
    out: dict[str, str] = {}
    for line in props.get("header", []):
        name, _, value = line.partition(" ")
        assert name.lower() not in out, f"header {name} set twice"
        out[name.lower()] = value.strip()
    return out


def parse_size(text: str) -> int:
    """Fluent Bit unit sizes: 2G, 50M, 512K, 100 (bytes)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([KMG]?)B?", text.strip(), flags=re.IGNORECASE)
    assert match, f"not a Fluent Bit size: {text!r}"
    factor = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}[match[2].upper()]
    return int(float(match[1]) * factor)


def output_of(config: FluentBitConfig, plugin: str) -> Props:
    outputs = [o for o in config["outputs"] if one(o, "name").lower() == plugin]
    assert len(outputs) == 1, f"expected one {plugin} output, found {len(outputs)}"
    return outputs[0]


def fixtures_dir() -> Path:
    if not FIXTURES_DIR.is_dir():
        pytest.fail(
            f"Fluent Bit fixtures not found at {FIXTURES_DIR}: they ship with the repository"
        )
    return FIXTURES_DIR


def load_fixture(name: str) -> dict[str, Any]:
    path = fixtures_dir() / name
    if not path.is_file():
        pytest.fail(f"fixture {path} is missing")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


# --------------------------------------------------------------------------------------------
# OpenTelemetry Collector helpers
# --------------------------------------------------------------------------------------------

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def go_duration(text: str) -> float:
    """Seconds in a Go duration string such as 5s, 300s, 1h30m."""
    text = str(text).strip()
    parts = _DURATION_RE.findall(text)
    assert parts, f"not a Go duration: {text!r}"
    assert "".join(n + u for n, u in parts) == text, f"not a Go duration: {text!r}"
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)


def load_otelcol(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    return doc


def component_type(component_id: str) -> str:
    return component_id.split("/", 1)[0]


def dynatrace_exporter(doc: dict[str, Any]) -> dict[str, Any]:
    exporters = [v for k, v in doc["exporters"].items() if component_type(k) in OTLP_HTTP_TYPES]
    assert len(exporters) == 1, "expected exactly one otlphttp exporter"
    exporter: dict[str, Any] = exporters[0]
    return exporter


def walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted path, leaf value) in a parsed YAML tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    else:
        yield path, node


def header_comment(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    block = []
    for line in lines:
        if not line.startswith("#"):
            break
        block.append(line)
    return "\n".join(block)


# ============================================================================================
# The parser itself
# ============================================================================================

CLASSIC_SAMPLE = """\
# leading comment
[SERVICE]
    Flush 1
    # a comment inside a section
    storage.path /tmp/x/

[INPUT]
    NAME   tail
    Path   /var/log/*.log

[filter]
    Name   modify
    Match  *
    Rename log content

[OUTPUT]
    Name   http
    Header Content-Type application/json; charset=utf-8
    header Authorization Api-Token ${DT_API_TOKEN}
"""


def test_classic_parser_reads_sections_keys_and_repeated_headers() -> None:
    """The classic parser handles comments, case-insensitive names and keys, and repeated keys."""
    config = parse_classic(CLASSIC_SAMPLE)
    assert config["service"] == {"flush": ["1"], "storage.path": ["/tmp/x/"]}
    assert config["inputs"] == [{"name": ["tail"], "path": ["/var/log/*.log"]}]
    assert config["filters"] == [{"name": ["modify"], "match": ["*"], "rename": ["log content"]}]
    assert headers(config["outputs"][0]) == {
        "content-type": "application/json; charset=utf-8",
        "authorization": "Api-Token ${DT_API_TOKEN}",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Flush 1\n", "outside any section"),
        ("[SERVICE]\nFlush 1\n", "must be indented"),
        ("[SERVICE]\n    Flush\n", "has no value"),
        ("[PARSERS]\n    Name x\n", "unknown section"),
        ("[SERVICE]\n    Flush 1\n[SERVICE]\n    Grace 1\n", "second [SERVICE]"),
        ("@INCLUDE other.conf\n", "directives"),
    ],
    ids=["outside", "unindented", "no-value", "unknown-section", "two-services", "include"],
)
def test_classic_parser_rejects_what_fluent_bit_would_not_load(text: str, message: str) -> None:
    """The classic parser refuses malformed text instead of guessing."""
    with pytest.raises(FluentBitSyntaxError, match=re.escape(message)):
        parse_classic(text)


# ============================================================================================
# Every file
# ============================================================================================


def test_expected_config_files_are_shipped() -> None:
    """collector-config/ ships the Collector gateways and agent, and both Fluent Bit outputs in
    two formats with their parsers file."""
    assert _ids(OTELCOL_FILES) == [
        "otelcol/activegate.yaml", "otelcol/agent.yaml", "otelcol/saas.yaml",
    ]
    assert _ids(FLUENT_BIT_FILES) == [
        "fluent-bit/tail-http-json.conf",
        "fluent-bit/tail-http-json.yaml",
        "fluent-bit/tail-opentelemetry.conf",
        "fluent-bit/tail-opentelemetry.yaml",
    ]
    assert FLUENT_BIT_PARSERS.is_file()


@pytest.mark.parametrize("path", ALL_CONFIG_FILES, ids=_ids(ALL_CONFIG_FILES))
def test_no_real_token_in_any_file(path: Path) -> None:
    """No file under collector-config/ contains anything shaped like a real Dynatrace token."""
    text = path.read_text(encoding="utf-8")
    assert not REAL_TOKEN_RE.search(text), f"{path.name} contains a token-like string"


@pytest.mark.parametrize(
    "path", [*OTELCOL_FILES, *FLUENT_BIT_FILES], ids=_ids([*OTELCOL_FILES, *FLUENT_BIT_FILES])
)
def test_api_token_only_ever_comes_from_the_environment(path: Path) -> None:
    """Every `Api-Token` in a config is followed by the DT_API_TOKEN environment placeholder."""
    text = path.read_text(encoding="utf-8")
    uses = re.findall(r"Api-Token\s+(\S+)", text)
    assert uses, "no Authorization header"
    placeholder = "${env:DT_API_TOKEN}" if path.parent == OTELCOL_DIR else "${DT_API_TOKEN}"
    assert {u.strip("\"'") for u in uses} == {placeholder}


def test_readme_covers_every_config() -> None:
    """collector-config/README.md names every shipped config file, how to validate it, and the
    pre-flight check to run before starting."""
    readme = (CONFIG_DIR / "README.md").read_text(encoding="utf-8")
    for path in [*OTELCOL_FILES, *FLUENT_BIT_FILES, FLUENT_BIT_PARSERS]:
        assert str(path.relative_to(CONFIG_DIR)) in readme, path.name
    assert "validate --config" in readme
    assert "--dry-run -c" in readme
    assert "dt-exporter preflight" in readme


@pytest.mark.parametrize(
    "path", [*OTELCOL_FILES, *FLUENT_BIT_FILES], ids=_ids([*OTELCOL_FILES, *FLUENT_BIT_FILES])
)
def test_header_says_to_run_the_preflight_check_first(path: Path) -> None:
    """Each config's header says to run `dt-exporter preflight <this file>` before starting."""
    header = header_comment(path)
    assert "BEFORE STARTING" in header
    assert f"dt-exporter preflight {path.name}" in header


# ============================================================================================
# OpenTelemetry Collector
# ============================================================================================

otelcol_files = pytest.mark.parametrize("path", OTELCOL_FILES, ids=_ids(OTELCOL_FILES))
otelcol_gateways = pytest.mark.parametrize("path", OTELCOL_GATEWAYS, ids=_ids(OTELCOL_GATEWAYS))


@otelcol_files
def test_otelcol_header_says_when_to_use_env_vars_and_token_scope(path: Path) -> None:
    """Each Collector file opens with when to use it, its env vars and the token scope."""
    header = header_comment(path)
    for needle in ("When to use", "DT_ENDPOINT", "DT_API_TOKEN", "logs.ingest", "validate"):
        assert needle in header, needle
    # Only a logs pipeline is configured, so the scopes of other signals are mentioned as
    # additions, together with cumulativetodelta for metrics.
    assert "openTelemetryTrace.ingest" in header
    assert "metrics.ingest" in header
    assert "cumulativetodelta" in header
    if path.stem == "activegate":
        assert "DT_CA_BUNDLE" in header
        assert "9999" in header


@otelcol_files
def test_otelcol_uses_the_current_exporter_name_and_notes_the_old_one(path: Path) -> None:
    """The exporter is `otlp_http` (v0.144+); the header says older releases need `otlphttp`."""
    doc = load_otelcol(path)
    assert {component_type(k) for k in doc["exporters"]} == {"otlp_http"}
    header = header_comment(path)
    assert "otlphttp" in header and "v0.144" in header


@otelcol_files
def test_otelcol_pipelines_reference_defined_components(path: Path) -> None:
    """Pipelines use only defined components, and every defined component is used or enabled."""
    doc = load_otelcol(path)
    service = doc["service"]
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in service["pipelines"].items():
        for kind in used:
            for component in pipeline.get(kind, []):
                assert component in (doc.get(kind) or {}), f"{name}: {kind} {component} undefined"
                used[kind].add(component)
    for kind, names in used.items():
        assert set(doc.get(kind) or {}) == names, f"unused {kind}"
    assert set(service["extensions"]) == set(doc["extensions"])


@otelcol_files
def test_otelcol_logs_pipeline_limits_memory_first_and_batches_last(path: Path) -> None:
    """The logs pipeline takes OTLP, starts with memory_limiter and ends with batch."""
    doc = load_otelcol(path)
    logs = doc["service"]["pipelines"]["logs"]
    assert logs["receivers"] == ["otlp"]
    processors = logs["processors"]
    assert component_type(processors[0]) == "memory_limiter"
    assert component_type(processors[-1]) == "batch"
    assert len(logs["exporters"]) == 1
    assert component_type(logs["exporters"][0]) in OTLP_HTTP_TYPES


@otelcol_files
def test_otelcol_gateways_listen_everywhere_and_the_agent_on_localhost(path: Path) -> None:
    """OTLP on 4317/4318: a gateway on every interface, the agent (and its probe) on localhost."""
    doc = load_otelcol(path)
    endpoints = [p["endpoint"] for p in doc["receivers"]["otlp"]["protocols"].values()]
    assert sorted(e.rsplit(":", 1)[1] for e in endpoints) == ["4317", "4318"]
    host = "localhost" if path == OTELCOL_AGENT else "0.0.0.0"
    assert {e.rsplit(":", 1)[0] for e in endpoints} == {host}
    assert doc["extensions"]["health_check"]["endpoint"] == f"{host}:13133"


@otelcol_files
def test_otelcol_exports_to_dynatrace_otlp_with_env_token(path: Path) -> None:
    """The exporter posts gzip protobuf to ${DT_ENDPOINT}/api/v2/otlp with an env-var token."""
    exporter = dynatrace_exporter(load_otelcol(path))
    assert exporter["endpoint"] == "${env:DT_ENDPOINT}/api/v2/otlp"
    assert exporter["headers"] == {"Authorization": "Api-Token ${env:DT_API_TOKEN}"}
    assert exporter["compression"] == "gzip"
    assert exporter["encoding"] == "proto"  # Dynatrace takes no OTLP/JSON
    assert "logs_endpoint" not in exporter  # derived from endpoint: .../api/v2/otlp/v1/logs


@otelcol_files
def test_otelcol_requests_are_capped_in_bytes_below_the_otlp_limit(path: Path) -> None:
    """The exporter batches by serialized bytes and splits above max_size, which leaves at least
    5 % headroom below Dynatrace's 2 MB OTLP limit (decimal or binary); otlp_http does not split
    on 413, so the cap is what keeps a request from being dropped whole."""
    batch = dynatrace_exporter(load_otelcol(path))["sending_queue"]["batch"]
    assert batch["sizer"] == "bytes"  # explicit: it would inherit `requests` otherwise
    max_size = batch["max_size"]
    assert 0 < max_size <= OTLP_HEADROOM * DEFAULT_OTLP_REQUEST_BYTES
    assert max_size < 2 * 1024**2
    assert 0 < batch["min_size"] <= max_size
    assert 0 < go_duration(batch["flush_timeout"]) <= 1  # never holds a batch/logs batch again


@otelcol_files
def test_otelcol_batch_processor_counts_records_and_documents_the_byte_fallback(
    path: Path,
) -> None:
    """batch/logs keeps Dynatrace's 1800/2000 records; the fallback for releases without the
    exporter's byte cap states the rule in bytes, and every worked example in it obeys the rule.
    """
    doc = load_otelcol(path)
    batch_id = doc["service"]["pipelines"]["logs"]["processors"][-1]
    batch = doc["processors"][batch_id]
    assert (batch["send_batch_size"], batch["send_batch_max_size"]) == (1800, 2000)
    assert batch["send_batch_max_size"] <= LOGS_MAX_RECORDS_PER_REQUEST
    assert 0 < go_duration(batch["timeout"]) <= 60
    saas = (OTELCOL_DIR / "saas.yaml").read_text(encoding="utf-8")
    assert "FALLBACK" in saas and "send_batch_max_size x" in saas
    limit = int(re.search(r"<= ([\d,]+):", saas)[1].replace(",", ""))  # type: ignore[index]
    assert limit <= OTLP_HEADROOM * DEFAULT_OTLP_REQUEST_BYTES
    examples = re.findall(r"([\d,]+)/([\d,]+) for (?:records up to )?([\d,]+) bytes", saas)
    assert len(examples) >= 3, examples
    for size, max_size, record_bytes in examples:
        size_n, max_n, bytes_n = (int(x.replace(",", "")) for x in (size, max_size, record_bytes))
        assert size_n < max_n
        assert max_n * bytes_n <= limit, (max_n, bytes_n)
    if path != OTELCOL_DIR / "saas.yaml":
        assert "saas.yaml" in path.read_text(encoding="utf-8")  # the fallback is written there


@otelcol_files
def test_otelcol_retry_budget_rides_out_tens_of_minutes_and_ends_inside_24h(path: Path) -> None:
    """Retries back off 5s to 30s, never forever, and give up on a request only after at least
    30 minutes (300 s dropped 10 requests in every outage past 5 minutes); a record waits at most
    the queue's drain time plus that budget, hours inside Dynatrace's 24 h window."""
    exporter = dynatrace_exporter(load_otelcol(path))
    retry = exporter["retry_on_failure"]
    assert retry["enabled"] is True
    initial = go_duration(retry["initial_interval"])
    maximum = go_duration(retry["max_interval"])
    elapsed = go_duration(retry["max_elapsed_time"])  # 0 would mean retry forever
    assert (initial, maximum) == (5, 30)
    assert elapsed >= 30 * 60
    queue = exporter["sending_queue"]
    # Drain bound: every queued request once through the consumers at 1 s per request (a
    # request waits behind the others), then its own retry budget.
    requests = queue["queue_size"] if queue["sizer"] == "requests" else (
        queue["queue_size"] // queue["batch"]["max_size"]
    )
    drain_s = requests / queue["num_consumers"]
    assert drain_s + elapsed <= MAX_RETRY_WINDOW_S / 4
    text = path.read_text(encoding="utf-8")
    assert "PER REQUEST" in text or "per request" in text  # the arithmetic is in the comment


@otelcol_gateways
def test_otelcol_gateway_queue_holds_the_retry_budget_on_disk(path: Path) -> None:
    """A gateway queues on disk (file_storage that service enables), and its queue holds at
    least the retry budget's worth of records at the rate the comment states."""
    doc = load_otelcol(path)
    exporter = dynatrace_exporter(doc)
    queue = exporter["sending_queue"]
    assert queue["enabled"] is True
    storage = queue["storage"]
    assert component_type(storage) == "file_storage"
    assert storage in doc["extensions"]
    assert storage in doc["service"]["extensions"]
    assert queue["num_consumers"] >= 1
    assert queue["sizer"] == "requests"  # queue_size counts batches from batch/logs
    batch = doc["processors"][doc["service"]["pipelines"]["logs"]["processors"][-1]]
    held_s = queue["queue_size"] * batch["send_batch_size"] / GATEWAY_RATE_RECORDS_S
    assert held_s >= go_duration(exporter["retry_on_failure"]["max_elapsed_time"])
    assert f"at {GATEWAY_RATE_RECORDS_S} records/s" in path.read_text(encoding="utf-8")
    extension = doc["extensions"][storage]
    directory = extension["directory"]
    match = re.fullmatch(r"\$\{env:DT_COLLECTOR_STORAGE_DIR:-(?P<default>/[^}]+)\}", directory)
    assert match, f"directory should be an env placeholder with a default: {directory!r}"
    assert extension["create_directory"] is True


def test_otelcol_agent_queues_in_memory_bounded_in_bytes() -> None:
    """The agent has no persistent queue (no file_storage at all); its in-memory queue is
    bounded in bytes and holds at least one full request."""
    doc = load_otelcol(OTELCOL_AGENT)
    queue = dynatrace_exporter(doc)["sending_queue"]
    assert queue["enabled"] is True
    assert "storage" not in queue
    assert not any(component_type(e) == "file_storage" for e in doc["extensions"])
    assert queue["sizer"] == "bytes"
    assert queue["batch"]["max_size"] * 10 <= queue["queue_size"] <= 1024**3
    detectors = doc["processors"]["resourcedetection/node"]["detectors"]
    assert "system" in detectors  # the node's host.name: the senders run on it


def test_otelcol_agent_sends_exactly_as_the_gateway_does() -> None:
    """Apart from the queue, the agent's exporter and batch processor are the gateway's."""
    saas, agent = load_otelcol(OTELCOL_DIR / "saas.yaml"), load_otelcol(OTELCOL_AGENT)
    saas_exporter, agent_exporter = dynatrace_exporter(saas), dynatrace_exporter(agent)
    assert saas_exporter["sending_queue"]["batch"] == agent_exporter["sending_queue"]["batch"]
    for exporter in (saas_exporter, agent_exporter):
        exporter.pop("sending_queue")
    assert agent_exporter == saas_exporter
    assert agent["processors"]["batch/logs"] == saas["processors"]["batch/logs"]
    assert agent["processors"]["memory_limiter"] == saas["processors"]["memory_limiter"]


@otelcol_files
def test_otelcol_placeholders_use_the_env_scheme(path: Path) -> None:
    """Every ${...} in a Collector config is ${env:NAME} or ${env:NAME:-default}."""
    for where, value in walk(load_otelcol(path)):
        if isinstance(value, str):
            for ref in re.findall(r"\$\{([^}]*)\}", value):
                assert re.fullmatch(r"env:[A-Z_][A-Z0-9_]*(:-.*)?", ref), f"{where}: ${{{ref}}}"


@pytest.mark.parametrize(
    "path", [*OTELCOL_FILES, *FLUENT_BIT_FILES], ids=_ids([*OTELCOL_FILES, *FLUENT_BIT_FILES])
)
def test_no_variable_without_a_default_is_left_unguarded(path: Path) -> None:
    """Every variable without a default is listed as required in the header, where the
    pre-flight check (which refuses it unset) is named; every optional one has a default."""
    text = path.read_text(encoding="utf-8")
    header = header_comment(path)
    required_block = header.split("Required environment variables", 1)[1]
    required_block = re.split(r"\n# Optional:|\n#\n# Validate", required_block, maxsplit=1)[0]
    required = set(re.findall(r"\b(DT_[A-Z_]+)\b", required_block))
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for ref in re.findall(r"\$\{(?:env:)?([A-Z_][A-Z0-9_]*)(:-[^}]*)?\}", body):
        name, default = ref
        if not default:
            assert name in required, f"{name} has no default and is not listed as required"
    assert "dt-exporter preflight" in header


@otelcol_files
def test_otelcol_never_disables_tls_verification(path: Path) -> None:
    """No Collector config turns TLS verification off or sends in plain text."""
    for where, value in walk(load_otelcol(path)):
        if where.endswith(("insecure_skip_verify", ".insecure")):
            assert value is False, where
    assert "insecure_skip_verify: true" not in path.read_text(encoding="utf-8")


def test_otelcol_activegate_trusts_its_private_ca() -> None:
    """The ActiveGate config trusts the CA in DT_CA_BUNDLE; the SaaS one uses system roots."""
    activegate = dynatrace_exporter(load_otelcol(OTELCOL_DIR / "activegate.yaml"))
    assert activegate["tls"]["ca_file"] == "${env:DT_CA_BUNDLE}"
    assert activegate["tls"].get("insecure_skip_verify", False) is False
    assert "tls" not in dynatrace_exporter(load_otelcol(OTELCOL_DIR / "saas.yaml"))


def test_otelcol_saas_and_activegate_differ_only_in_tls() -> None:
    """Apart from the exporter's tls block, the ActiveGate config is the SaaS config."""
    saas = load_otelcol(OTELCOL_DIR / "saas.yaml")
    activegate = load_otelcol(OTELCOL_DIR / "activegate.yaml")
    dynatrace_exporter(activegate).pop("tls")
    assert activegate == saas


# ============================================================================================
# Fluent Bit
# ============================================================================================

fluent_bit_files = pytest.mark.parametrize("path", FLUENT_BIT_FILES, ids=_ids(FLUENT_BIT_FILES))
FLUENT_BIT_STEMS = sorted({p.stem for p in FLUENT_BIT_FILES})


@pytest.mark.parametrize("stem", FLUENT_BIT_STEMS)
def test_fluent_bit_classic_and_yaml_say_the_same(stem: str) -> None:
    """The classic .conf and the YAML variant agree on every section and every setting."""
    classic = canonical_config(load_fluent_bit(FLUENT_BIT_DIR / f"{stem}.conf"))
    from_yaml = canonical_config(load_fluent_bit(FLUENT_BIT_DIR / f"{stem}.yaml"))
    assert from_yaml["outputs"] == classic["outputs"]
    assert from_yaml == classic


@fluent_bit_files
def test_fluent_bit_buffers_on_disk(path: Path) -> None:
    """The tail input buffers to the filesystem and keeps offsets; the service sets up storage."""
    config = canonical_config(load_fluent_bit(path))
    service = config["service"]
    assert one(service, "storage.path").startswith("/")
    assert one(service, "storage.sync") in {"normal", "full"}
    assert parse_size(one(service, "storage.backlog.mem_limit")) > 5 * 1024**2  # above default
    assert one(service, "storage.keep.rejected") == "on"  # dead-letter queue
    (tail,) = config["inputs"]
    assert one(tail, "name") == "tail"
    assert one(tail, "path").startswith("/")
    assert one(tail, "storage.type") == "filesystem"
    assert one(tail, "db").startswith("/")
    assert one(tail, "skip_long_lines") == "on"


@fluent_bit_files
def test_fluent_bit_tail_handles_empty_long_and_existing_lines(path: Path) -> None:
    """Empty lines are skipped, over-long lines cut (not dropped), every line's file recorded as
    log.source, and the first start's read position set explicitly and explained."""
    config = canonical_config(load_fluent_bit(path))
    (tail,) = config["inputs"]
    assert one(tail, "skip_empty_lines") == "on"
    assert one(tail, "truncate_long_lines") == "on"
    assert parse_size(one(tail, "buffer_max_size")) <= 1024**2
    assert one(tail, "path_key") == "log.source"
    assert one(tail, "read_from_head") == "off"
    text = path.read_text(encoding="utf-8")
    assert re.search(r"first start", text, flags=re.IGNORECASE)
    assert re.search(r"read from their end", text, flags=re.IGNORECASE)


def test_fluent_bit_parsers_file_defines_json_without_a_time_key() -> None:
    """dt_json parses JSON and takes no time from the line (no Time_Key/Time_Format): Fluent
    Bit has no 24 h filter, and one old line must not take the request down with it."""
    parsers = parse_classic(FLUENT_BIT_PARSERS.read_text(encoding="utf-8"), parsers_file=True)
    (parser,) = parsers["parsers"]
    parser = {key: [canonical(v) for v in values] for key, values in parser.items()}
    assert one(parser, "name") == "dt_json"
    assert one(parser, "format") == "json"
    assert not {"time_key", "time_format", "time_keep"} & set(parser)


@pytest.mark.parametrize("suffix", [".conf", ".yaml"])
def test_fluent_bit_http_json_parses_json_lines_and_renames_their_timestamp(suffix: str) -> None:
    """tail-http-json parses `log` with dt_json (Reserve_Data On, no Time_Key), then renames a
    line's own `timestamp` to a key Dynatrace does not read as a time, so the output's
    json_date_key stays the only timestamp."""
    path = FLUENT_BIT_DIR / f"tail-http-json{suffix}"
    config = canonical_config(load_fluent_bit(path))
    assert one(config["service"], "parsers_file") == FLUENT_BIT_PARSERS.name
    parser, modify = config["filters"]
    assert one(parser, "name") == "parser"
    assert one(parser, "key_name") == "log"
    assert one(parser, "parser") == "dt_json"
    assert one(parser, "reserve_data") == "on"
    assert parser.get("preserve_key", ["off"]) == ["off"]  # the parsed line replaces `log`
    assert "time_key" not in parser
    assert one(modify, "name") == "modify"
    source, target = one(modify, "rename").split()
    assert source == one(output_of(config, "http"), "json_date_key") == "timestamp"
    assert target.lower() not in TIMESTAMP_KEYS
    for step in (parser, modify):
        assert one(step, "match") == one(output_of(config, "http"), "match")


@pytest.mark.parametrize("suffix", [".conf", ".yaml"])
def test_fluent_bit_otlp_sends_attributes_and_bounds_requests_by_bytes(suffix: str) -> None:
    """The OTLP output sends the line as body and the other keys (log.source) as attributes, and
    batch_size x (a 3 kB line + path + framing) stays under 1.9 MB: 5.1.1 does not retry 413."""
    path = FLUENT_BIT_DIR / f"tail-opentelemetry{suffix}"
    config = canonical_config(load_fluent_bit(path))
    output = output_of(config, "opentelemetry")
    assert one(output, "logs_body_key") == "$log"
    assert one(output, "logs_body_key_attributes") == "on"
    assumed_record_bytes = 3_000 + 100 + 40  # measured ~3 kB lines, a 100-byte path, framing
    batch_size = int(one(output, "batch_size"))
    assert batch_size * assumed_record_bytes <= OTLP_HEADROOM * DEFAULT_OTLP_REQUEST_BYTES
    assert config["filters"] == []  # JSON lines go through tail-http-json (see its header)
    conf = (FLUENT_BIT_DIR / "tail-opentelemetry.conf").read_text(encoding="utf-8")
    assert "batch_size = 1,900,000 / (line + path + 40)" in conf
    assert "batch_size x (average line bytes" in conf


@fluent_bit_files
def test_fluent_bit_comments_match_what_5_1_1_does(path: Path) -> None:
    """The comments say what 5.1.1 did: the OTLP output retries 429/502/503/504 only; no claim
    that tiny lines would 413 (7-byte lines gave 25,601 records in one accepted request)."""
    text = path.read_text(encoding="utf-8")
    assert "every non-2xx" not in text
    assert "would get 413" not in text and "< ~20 bytes" not in text
    if path.stem == "tail-opentelemetry":
        assert re.search(r"429[/, ]+502[/, ]+(and )?503[/, ]+(and )?504", text)
        assert "only" in text


@fluent_bit_files
def test_fluent_bit_output_retries_deliberately_and_bounds_disk(path: Path) -> None:
    """Each output sets Retry_Limit to a number above 1 and a storage.total_limit_size."""
    config = canonical_config(load_fluent_bit(path))
    for output in config["outputs"]:
        retry_limit = one(output, "retry_limit")
        assert retry_limit.isdigit(), f"Retry_Limit should be a number, not {retry_limit!r}"
        assert int(retry_limit) > 1
        assert parse_size(one(output, "storage.total_limit_size")) >= 100 * 1024**2


@fluent_bit_files
def test_fluent_bit_retry_window_ends_well_before_24h(path: Path) -> None:
    """Retries ride out about an hour of outage and end hours before Dynatrace's 24 h cut-off.

    Fluent Bit waits a random time between scheduler.base and min(base x 2^n, scheduler.cap)
    before retry n; the window is the sum over n = 1..Retry_Limit.
    """
    config = canonical_config(load_fluent_bit(path))
    base = int(config["service"].get("scheduler.base", ["5"])[0])
    cap = int(config["service"].get("scheduler.cap", ["2000"])[0])
    for output in config["outputs"]:
        retries = int(one(output, "retry_limit"))
        ceilings = [min(cap, base * 2**n) for n in range(1, retries + 1)]
        longest = sum(ceilings)
        average = sum((base + c) / 2 for c in ceilings)
        assert average >= 3600, "retries should cover an outage of an hour on average"
        assert longest <= MAX_RETRY_WINDOW_S / 4, "retries should end hours before 24 h"


@fluent_bit_files
def test_fluent_bit_output_verifies_tls_and_compresses(path: Path) -> None:
    """Each output talks TLS with verification to ${DT_HOST}:443 and gzips the body."""
    config = canonical_config(load_fluent_bit(path))
    for output in config["outputs"]:
        assert one(output, "host") == "${DT_HOST}"
        assert one(output, "port") == "443"
        assert one(output, "tls") == "on"
        assert one(output, "tls.verify") == "on"
        assert one(output, "tls.verify_hostname") == "on"
        assert one(output, "compress") == "gzip"
        assert headers(output)["authorization"] == "Api-Token ${DT_API_TOKEN}"


@fluent_bit_files
def test_fluent_bit_placeholders_are_plain_environment_variables(path: Path) -> None:
    """Fluent Bit files use ${NAME} placeholders (Fluent Bit has no ${env:NAME} syntax)."""
    for ref in re.findall(r"\$\{([^}]*)\}", path.read_text(encoding="utf-8")):
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*", ref), f"${{{ref}}}"


@fluent_bit_files
def test_fluent_bit_documents_the_activegate_variant(path: Path) -> None:
    """Each Fluent Bit file shows the ActiveGate variant: port 9999, /e/{env} path, private CA."""
    text = path.read_text(encoding="utf-8")
    config = load_fluent_bit(path)
    (output,) = config["outputs"]
    uri_key = "uri" if "uri" in output else "logs_uri"
    assert f"/e/${{DT_ENV_ID}}{one(output, uri_key)}" in text
    assert "9999" in text
    assert "${DT_CA_BUNDLE}" in text
    assert "tls.ca_file" in text


def test_fluent_bit_http_output_follows_dynatrace_recipe() -> None:
    """The http output posts JSON arrays with ISO timestamps to /api/v2/logs/ingest."""
    for suffix in (".conf", ".yaml"):
        config = canonical_config(load_fluent_bit(FLUENT_BIT_DIR / f"tail-http-json{suffix}"))
        output = output_of(config, "http")
        assert one(output, "uri") == "/api/v2/logs/ingest"
        assert one(output, "format") == "json"
        assert one(output, "json_date_format") == "iso8601"
        assert one(output, "json_date_key") == "timestamp"
        assert headers(output)["content-type"] == "application/json; charset=utf-8"
        assert one(output, "allow_duplicated_headers") == "off"


def test_fluent_bit_opentelemetry_output_targets_otlp_logs() -> None:
    """The opentelemetry output posts to /api/v2/otlp/v1/logs over OTLP/HTTP."""
    for suffix in (".conf", ".yaml"):
        config = canonical_config(load_fluent_bit(FLUENT_BIT_DIR / f"tail-opentelemetry{suffix}"))
        output = output_of(config, "opentelemetry")
        assert one(output, "logs_uri") == "/api/v2/otlp/v1/logs"
        assert output.get("grpc", ["off"]) == ["off"]  # Dynatrace takes no gRPC


# --------------------------------------------------------------------------------------------
# Agreement with what a real Fluent Bit 5.1.1 sent (tests/fixtures/fluent-bit-5.1.1/)
# --------------------------------------------------------------------------------------------

#: Settings that name the stand-in's address, not how Dynatrace is spoken to.
DEPLOYMENT_KEYS = frozenset({"host", "port", "match", "uri", "logs_uri"})
_ENV_PREFIX_RE = re.compile(r"^/e/[A-Za-z0-9_-]+(?=/api/)")


def _agree_with_fixture(fixture_name: str, ours: Props, uri_key: str) -> None:
    fixture = load_fixture(fixture_name)
    config = canonical_config(parse_classic(fixture["config"]))
    (theirs,) = config["outputs"]
    assert one(theirs, "name") == one(ours, "name")

    # The fixture spoke to an ActiveGate-style path /e/{env}/api/...; ours is the SaaS path.
    their_uri = one(theirs, uri_key)
    assert _ENV_PREFIX_RE.sub("", their_uri) == one(ours, uri_key)

    # Headers: same names; same values, except the token, which is a placeholder on both sides.
    their_headers, our_headers = headers(theirs), headers(ours)
    assert set(their_headers) == set(our_headers)
    for name, value in their_headers.items():
        if name == "authorization":
            assert value.split()[0] == our_headers[name].split()[0] == "Api-Token"
        else:
            assert our_headers[name] == value, name

    # Every other setting the fixture used, we use with the same value.
    for key, values in theirs.items():
        if key in DEPLOYMENT_KEYS or key == "header":
            continue
        assert ours.get(key) == values, f"{key}: fixture {values}, ours {ours.get(key)}"

    # And those settings worked: every request hit that path and was accepted.
    assert fixture["requests"], "fixture recorded no requests"
    for request in fixture["requests"]:
        assert request["path"] == their_uri
        assert 200 <= request["status"] < 300
        sent = {k.lower(): v for k, v in request["headers"].items()}
        for name, value in our_headers.items():
            if name != "authorization":
                assert sent[name] == value, name
        if "compress" in theirs:
            assert sent["content-encoding"] == one(theirs, "compress")


@pytest.mark.parametrize("fixture_name", ["http-json.json", "http-json-gzip.json"])
@pytest.mark.parametrize("suffix", [".conf", ".yaml"])
def test_fluent_bit_http_output_agrees_with_real_fluent_bit_fixture(
    fixture_name: str, suffix: str
) -> None:
    """Our http output uses every setting that made Fluent Bit 5.1.1's requests succeed."""
    ours = output_of(
        canonical_config(load_fluent_bit(FLUENT_BIT_DIR / f"tail-http-json{suffix}")), "http"
    )
    _agree_with_fixture(fixture_name, ours, "uri")


@pytest.mark.parametrize("suffix", [".conf", ".yaml"])
def test_fluent_bit_opentelemetry_output_agrees_with_real_fluent_bit_fixture(suffix: str) -> None:
    """Our opentelemetry output uses every setting that made Fluent Bit 5.1.1's requests succeed."""
    path = FLUENT_BIT_DIR / f"tail-opentelemetry{suffix}"
    ours = output_of(canonical_config(load_fluent_bit(path)), "opentelemetry")
    _agree_with_fixture("opentelemetry-otlp.json", ours, "logs_uri")


def test_fluent_bit_fixture_shows_why_json_lines_need_the_parser() -> None:
    """In the real 5.1.1 capture a tailed JSON line reached Dynatrace as one string with no
    loglevel, while a record that had fields got `message` as content and `level` as loglevel:
    the parser filter turns the first kind into the second."""
    fixture = load_fixture("http-json-gzip.json")
    tailed = [r for r in fixture["dynatrace_view"] if r["content_key"] == "log"]
    assert tailed, "fixture has no tailed lines"
    assert {r["timestamp_key"] for r in tailed} == {"timestamp"}
    json_lines = [r for r in tailed if r["content"].startswith("{")]
    assert json_lines, "fixture has no tailed JSON line"
    for record in json_lines:
        assert record["loglevel"] == "NONE"
        assert record["attributes"] == {}
        assert isinstance(json.loads(record["content"]), dict)  # what dt_json would parse
    structured = [r for r in fixture["dynatrace_view"] if r["content_key"] == "message"]
    assert structured, "fixture has no structured record"
    for record in structured:
        assert record["loglevel_key"] == "level" and record["loglevel"] != "NONE"
        assert record["attributes"]
        assert record["timestamp_key"] == "timestamp"  # Fluent Bit's own (json_date_key)


def test_fluent_bit_fixture_otlp_carried_no_attributes_without_logs_body_key() -> None:
    """The real 5.1.1 OTLP capture (no logs_body_key settings) carried a body and nothing else,
    which is why the shipped OTLP output sets logs_body_key and logs_body_key_attributes."""
    fixture = load_fixture("opentelemetry-otlp.json")
    theirs = canonical_config(parse_classic(fixture["config"]))["outputs"][0]
    assert "logs_body_key" not in theirs
    records = [
        record
        for request in fixture["otlp_decoded"]
        for resource in request["resourceLogs"]
        for scope in resource["scopeLogs"]
        for record in scope["logRecords"]
    ]
    assert records
    for record in records:
        assert set(record) == {"timeUnixNano", "body"}
