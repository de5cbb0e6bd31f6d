"""Dynatrace enrichment files: formats, precedence, failures, the per-process cache, the merge."""

from __future__ import annotations

import collections
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from opentelemetry._logs import LogRecord
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.sdk._logs import ReadableLogRecord
from opentelemetry.sdk.resources import OTELResourceDetector, Resource, get_aggregated_resources
from opentelemetry.sdk.util.instrumentation import InstrumentationScope

from dt_exporter import DynatraceResourceDetector, config
from dt_exporter import _otlp as otlp
from dt_exporter._enrichment import (
    MAX_FILE_BYTES,
    PROCESS_FILE,
    UNIX_DIRECTORY,
    EnrichmentReader,
    MalformedFileError,
    default_directory,
    parse_json,
    parse_properties,
    read_files,
    under,
)
from dt_exporter.errors import ConfigError
from dt_exporter.limits import GRAIL
from dt_exporter.mapping import RecordMapper

HOST = {"dt.entity.host": "HOST-1111", "host.name": "node-a", "dt.host_group.id": "shop"}
POD = {"dt.entity.host": "HOST-2222", "k8s.pod.name": "checkout-7d9f", "k8s.namespace.name": "x"}
PROCESS = {"dt.entity.process_group_instance": "PROCESS_GROUP_INSTANCE-33",
           "dt.entity.host": "HOST-3333"}


class Tree:
    """A temporary root laid out as Dynatrace lays it out: enrichment dir, working dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.directory = root / "var" / "lib" / "dynatrace" / "enrichment"
        self.workdir = root / "app"
        self.directory.mkdir(parents=True)
        self.workdir.mkdir()

    def write(self, name: str, text: str | bytes) -> Path:
        path = self.directory / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return path

    def process(self, attributes: dict[str, Any], suffix: str = ".json",
                target: str | None = None) -> Path:
        """The indirection file in the working directory naming an attributes file."""
        real = self.root / "proc" / f"attrs{suffix}"
        real.parent.mkdir(exist_ok=True)
        real.write_text(json.dumps(attributes) if suffix == ".json" else properties(attributes))
        (self.workdir / (PROCESS_FILE + suffix)).write_text((target or str(real)) + "\n")
        return real

    def reader(self, **kwargs: Any) -> EnrichmentReader:
        kwargs.setdefault("enabled", True)
        return EnrichmentReader(self.directory, self.workdir, **kwargs)


def properties(attributes: dict[str, Any]) -> str:
    return "".join(f"{k}={v}\n" for k, v in attributes.items())


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    return Tree(tmp_path)


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The warnings logged by dt_exporter.enrichment so far."""
    caplog.set_level(logging.WARNING, logger="dt_exporter.enrichment")
    return lambda: [r.getMessage() for r in caplog.records if r.name == "dt_exporter.enrichment"]


# -- the three files ----------------------------------------------------------------------------


def test_host_json_file_gives_its_attributes(tree: Tree) -> None:
    """dt_host_metadata.json's attributes come back as they are, with their source named."""
    path = tree.write("dt_host_metadata.json", json.dumps(HOST))
    found = tree.reader().read()
    assert dict(found.attributes) == HOST
    (source,) = found.sources
    assert (source.level, source.path, source.via) == ("host", str(path), None)
    assert found.origin("host.name") is source


def test_properties_file_is_read_when_json_is_absent(tree: Tree) -> None:
    """Without dt_metadata.json, dt_metadata.properties gives the pod's attributes."""
    tree.write("dt_metadata.properties", properties(POD))
    found = tree.reader().read()
    assert dict(found.attributes) == POD
    assert found.sources[0].level == "pod"


def test_json_wins_over_properties_when_both_exist(tree: Tree) -> None:
    """JSON first: the .properties twin is not read at all when the JSON is usable."""
    tree.write("dt_host_metadata.json", json.dumps({"a": "from-json"}))
    tree.write("dt_host_metadata.properties", "a=from-properties\nb=only-here\n")
    assert dict(tree.reader().attributes()) == {"a": "from-json"}


def test_process_file_is_an_indirection_to_the_attributes_file(tree: Tree) -> None:
    """The magic file in the working directory holds a path; that file has the attributes."""
    real = tree.process(PROCESS)
    found = tree.reader().read()
    assert dict(found.attributes) == PROCESS
    (source,) = found.sources
    assert source.level == "process"
    assert source.path == str(real)
    assert source.via == str(tree.workdir / (PROCESS_FILE + ".json"))


def test_process_properties_indirection_reads_properties(tree: Tree) -> None:
    """The .properties magic file names a properties file, read as properties."""
    tree.process({"dt.entity.process_group_instance": "PGI-9"}, suffix=".properties")
    assert dict(tree.reader().attributes()) == {"dt.entity.process_group_instance": "PGI-9"}


def test_relative_path_in_process_file_is_resolved_against_the_working_directory(
    tree: Tree,
) -> None:
    """A relative path in the magic file is relative to the working directory."""
    (tree.workdir / "here.json").write_text(json.dumps({"k": "v"}))
    (tree.workdir / (PROCESS_FILE + ".json")).write_text("here.json")
    assert dict(tree.reader().attributes()) == {"k": "v"}


def test_precedence_process_over_pod_over_host(tree: Tree) -> None:
    """On a clash the most specific file wins; every file's other keys are kept."""
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    tree.write("dt_metadata.json", json.dumps(POD))
    tree.process(PROCESS)
    found = tree.reader().read()
    assert found.attributes["dt.entity.host"] == "HOST-3333"
    assert found.attributes == {**HOST, **POD, **PROCESS}
    assert [s.level for s in found.sources] == ["process", "pod", "host"]
    assert found.origin("dt.entity.host").level == "process"  # type: ignore[union-attr]
    assert found.origin("k8s.pod.name").level == "pod"  # type: ignore[union-attr]
    assert found.origin("dt.host_group.id").level == "host"  # type: ignore[union-attr]
    assert found.origin("nope") is None


def test_pod_wins_over_host(tree: Tree) -> None:
    """Without a process file, the pod's value beats the host's."""
    tree.write("dt_host_metadata.properties", properties(HOST))
    tree.write("dt_metadata.properties", properties(POD))
    assert tree.reader().attributes()["dt.entity.host"] == "HOST-2222"


def test_no_files_is_silent_and_empty(tree: Tree, logged: Callable[[], list[str]]) -> None:
    """Missing files are normal: nothing found, nothing logged."""
    found = tree.reader().read()
    assert dict(found.attributes) == {}
    assert found.sources == () and found.problems == ()
    assert logged() == []


def test_missing_directory_is_silent(tmp_path: Path, logged: Callable[[], list[str]]) -> None:
    """An enrichment directory that does not exist at all is not a problem either."""
    reader = EnrichmentReader(tmp_path / "absent", tmp_path / "absent-too", enabled=True)
    assert dict(reader.attributes()) == {}
    assert logged() == []


# -- broken files -------------------------------------------------------------------------------


def test_malformed_json_is_one_warning_then_properties_are_used(
    tree: Tree, logged: Callable[[], list[str]]
) -> None:
    """A JSON file that does not parse is skipped with one warning; its .properties twin is read."""
    path = tree.write("dt_host_metadata.json", '{"dt.entity.host": "HOST-SECRET-CONTENT"')
    tree.write("dt_host_metadata.properties", "dt.entity.host=HOST-1\n")
    found = tree.reader().read()
    assert dict(found.attributes) == {"dt.entity.host": "HOST-1"}
    assert len(logged()) == 1
    assert str(path) in logged()[0] and "not JSON" in logged()[0]
    assert "SECRET" not in logged()[0]  # names the file, never its content
    assert found.problems == tuple(logged())


@pytest.mark.parametrize(
    ("text", "reason"),
    [("[1, 2]", "expected a JSON object"), ("", "not JSON"), ("\x00\x01", "not JSON"),
     ("[" * 100_000, "not JSON")],
    ids=["array", "empty", "binary", "deep"],
)
def test_unusable_json_is_skipped_with_one_warning(
    tree: Tree, logged: Callable[[], list[str]], text: str, reason: str
) -> None:
    """Every kind of bad JSON file: no attributes from it, one warning, no exception."""
    tree.write("dt_metadata.json", text)
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    assert dict(tree.reader().attributes()) == HOST
    assert len(logged()) == 1 and reason in logged()[0]


def test_malformed_properties_is_skipped_with_one_warning(
    tree: Tree, logged: Callable[[], list[str]]
) -> None:
    """A bad \\uXXXX escape makes Java refuse the file; we skip it with one warning."""
    tree.write("dt_metadata.properties", "a=1\nb=\\u12G4\n")
    assert dict(tree.reader().attributes()) == {}
    assert len(logged()) == 1 and "\\uXXXX" in logged()[0]


def test_unreadable_file_is_skipped_with_one_warning(
    tree: Tree, logged: Callable[[], list[str]]
) -> None:
    """A path that exists but cannot be read (here: a directory) is one warning, skipped."""
    (tree.directory / "dt_host_metadata.json").mkdir()
    tree.write("dt_metadata.json", json.dumps(POD))
    assert dict(tree.reader().attributes()) == POD
    assert len(logged()) == 1 and "cannot be read" in logged()[0]


def test_oversized_file_is_skipped_with_one_warning(
    tree: Tree, logged: Callable[[], list[str]]
) -> None:
    """A file larger than MAX_FILE_BYTES is not an enrichment file: skipped, one warning."""
    tree.write("dt_host_metadata.properties", "a=" + "x" * MAX_FILE_BYTES)
    assert dict(tree.reader().attributes()) == {}
    assert len(logged()) == 1 and "larger than" in logged()[0]


def test_process_file_naming_a_missing_file_is_one_warning(
    tree: Tree, logged: Callable[[], list[str]]
) -> None:
    """An indirection to nowhere is abnormal: one warning naming both paths."""
    tree.process(PROCESS, target=str(tree.root / "gone.json"))
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    assert dict(tree.reader().attributes()) == HOST
    assert len(logged()) == 1
    assert "gone.json" in logged()[0] and PROCESS_FILE in logged()[0]


@pytest.mark.parametrize("content", ["", "  \n", "/a\n/b\n"], ids=["empty", "blank", "two"])
def test_process_file_not_holding_one_path_is_one_warning(
    tree: Tree, logged: Callable[[], list[str]], content: str
) -> None:
    """The magic file must hold exactly one path."""
    (tree.workdir / (PROCESS_FILE + ".json")).write_text(content)
    assert dict(tree.reader().attributes()) == {}
    assert len(logged()) == 1 and "one file path" in logged()[0]


def test_process_file_naming_a_malformed_file_is_one_warning(
    tree: Tree, logged: Callable[[], list[str]]
) -> None:
    """The named file is parsed too; when it is bad, one warning and the next candidate."""
    real = tree.process(PROCESS)
    real.write_text("not json")
    tree.process({"from": "properties"}, suffix=".properties")
    assert dict(tree.reader().attributes()) == {"from": "properties"}
    assert len(logged()) == 1 and "unusable" in logged()[0]


def test_an_unexpected_error_is_one_warning_and_never_raises(
    tmp_path: Path, logged: Callable[[], list[str]]
) -> None:
    """Whatever goes wrong inside (here: a directory name Python cannot pass to the OS), read()
    returns the empty enrichment, warns once, and does not try again in this process."""
    reader = EnrichmentReader(str(tmp_path) + "\x00bad", tmp_path, enabled=True)
    first = reader.read()
    assert dict(first.attributes) == {} and first.problems
    assert reader.read() is first
    assert len(logged()) == 1


# -- JSON values ----------------------------------------------------------------------------------


def test_json_values_become_attribute_values() -> None:
    """Scalars stay; null is left out; containers become JSON text; huge ints their digits."""
    parsed = parse_json(json.dumps({
        "s": "x", "b": True, "i": 7, "f": 1.5, "n": None, "list": [1, "a"], "map": {"k": 1},
        "big": 2**70, "": "empty key dropped",
    }))
    assert parsed == {"s": "x", "b": True, "i": 7, "f": 1.5, "list": '[1,"a"]',
                      "map": '{"k":1}', "big": str(2**70)}


def test_json_with_utf8_bom_is_read(tree: Tree) -> None:
    """Windows tools write a BOM; it is not part of the first key."""
    tree.write("dt_host_metadata.json", b"\xef\xbb\xbf" + json.dumps({"k": "v"}).encode())
    assert dict(tree.reader().attributes()) == {"k": "v"}


def test_json_nan_is_text() -> None:
    """Python's json accepts NaN; an attribute gets its text instead of a non-finite float."""
    assert parse_json('{"x": NaN}') == {"x": "nan"}


# -- Java properties ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a=1\nb:2\nc 3\n", {"a": "1", "b": "2", "c": "3"}),
        ("  a  =  spaced value  \n", {"a": "spaced value  "}),
        ("# comment\n! also\n\n   \n#a=1\nb=2", {"b": "2"}),
        ("a=x#not-a-comment\n", {"a": "x#not-a-comment"}),
        ("key\\ with\\ spaces = v\n", {"key with spaces": "v"}),
        ("a\\=b=c\n", {"a=b": "c"}),
        ("a=\\t\\n\\r\\f\\q\\\\\n", {"a": "\t\n\r\fq\\"}),
        ("a=caf\\u00e9\n", {"a": "café"}),
        ("a=\\uD83D\\uDE00\n", {"a": "😀"}),
        ("a=one \\\n    two \\\n\tthree\n", {"a": "one two three"}),
        ("a=ends with backslash\\\\\nb=2\n", {"a": "ends with backslash\\", "b": "2"}),
        ("# comment \\\nb=2\n", {"b": "2"}),
        ("a=1\r\nb=2\rc=3\n", {"a": "1", "b": "2", "c": "3"}),
        ("lonely\n", {"lonely": ""}),
        ("a=1\na=2\n", {"a": "2"}),
        ("a=continued to end\\", {"a": "continued to end"}),
        ("a=x\\\n\nb=y\n", {"a": "x", "b": "y"}),
        ("=no key\n", {"": "no key"}),
        ("\\\n#c=1\n", {}),
        ("\\\n\nb=1", {"b": "1"}),
        ("\\\n", {"": ""}),
        ("\\\n  ", {}),
        ("a\\\n", {"a": ""}),
        ("\\\n  \nb=1\n", {"b": "1"}),
    ],
    ids=["separators", "whitespace", "comments", "hash-inside", "escaped-space",
         "escaped-equals", "escapes", "unicode", "surrogate-pair", "continuation",
         "even-backslashes", "comment-no-continuation", "line-ends", "key-only", "last-wins",
         "eof-backslash", "empty-continuation", "empty-key", "continued-into-comment",
         "continued-into-blank", "continued-into-end", "continued-into-spaces-then-end",
         "key-continued-into-end", "continued-into-spaces-then-line"],
)
def test_properties_parse_as_java_does(text: str, expected: dict[str, str]) -> None:
    """Each case is what java.util.Properties.load gives for the same text (checked against a
    JDK in tests/integration/test_enrichment_zero_code.py)."""
    assert parse_properties(text) == expected


def test_properties_malformed_unicode_escape_raises_malformed() -> None:
    """`\\u` must be followed by four hex digits, as in Java."""
    with pytest.raises(MalformedFileError):
        parse_properties("a=\\u00")


def test_properties_in_latin1_are_read(tree: Tree) -> None:
    """Bytes that are not UTF-8 are read as ISO-8859-1, Java's encoding for properties."""
    tree.write("dt_host_metadata.properties", "city=M\xfcnchen\n".encode("latin-1"))
    assert dict(tree.reader().attributes()) == {"city": "München"}


# -- cache and fork -------------------------------------------------------------------------------


class Pid:
    def __init__(self) -> None:
        self.value = 100

    def __call__(self) -> int:
        return self.value


def test_files_are_read_once_per_process(tree: Tree) -> None:
    """The second call returns the same object without reading, even if a file changed."""
    host = tree.write("dt_host_metadata.json", json.dumps(HOST))
    reader = tree.reader(getpid=Pid())
    first = reader.read()
    host.write_text(json.dumps({"changed": "yes"}))
    assert reader.read() is first
    assert reader.attributes() is first.attributes
    assert reader.reads == 1


def test_after_fork_unchanged_files_are_not_read_again(tree: Tree) -> None:
    """In a child (another pid) the files are only stat'ed: same object, no second read."""
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    tree.process(PROCESS)
    pid = Pid()
    reader = tree.reader(getpid=pid)
    first = reader.read()
    pid.value = 101
    assert reader.read() is first
    assert reader.reads == 1


def test_after_fork_a_changed_file_is_read_again(tree: Tree) -> None:
    """A file whose size or mtime changed since the parent read it is read again."""
    host = tree.write("dt_host_metadata.json", json.dumps(HOST))
    pid = Pid()
    reader = tree.reader(getpid=pid)
    reader.read()
    host.write_text(json.dumps({"dt.entity.host": "HOST-NEW-ONE"}))
    os.utime(host, ns=(1, 1))  # a different mtime even on coarse clocks
    pid.value = 101
    assert dict(reader.attributes()) == {"dt.entity.host": "HOST-NEW-ONE"}
    assert reader.reads == 2


def test_after_fork_a_new_process_target_is_read(tree: Tree) -> None:
    """The child's magic file may name another file (its own process): that one is read."""
    tree.process(PROCESS)
    pid = Pid()
    reader = tree.reader(getpid=pid)
    reader.read()
    child = tree.root / "child.json"
    child.write_text(json.dumps({"dt.entity.process_group_instance": "PGI-CHILD"}))
    (tree.workdir / (PROCESS_FILE + ".json")).write_text(str(child))
    pid.value = 101
    assert dict(reader.attributes()) == {"dt.entity.process_group_instance": "PGI-CHILD"}


def test_a_file_appearing_after_fork_is_read(tree: Tree) -> None:
    """A file absent in the parent and present in the child counts as a change."""
    pid = Pid()
    reader = tree.reader(getpid=pid)
    assert dict(reader.attributes()) == {}
    tree.write("dt_metadata.json", json.dumps(POD))
    pid.value = 101
    assert dict(reader.attributes()) == POD


# -- switch and paths -----------------------------------------------------------------------------


def test_disabled_reader_reads_nothing(tree: Tree) -> None:
    """enabled=False: empty, marked disabled, no file opened."""
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    reader = tree.reader(enabled=False)
    found = reader.read()
    assert dict(found.attributes) == {} and found.enabled is False
    assert reader.reads == 0


@pytest.mark.parametrize(("raw", "expected"), [(None, True), ("false", False), ("0", False),
                                                ("true", True), ("  ", True)])
def test_enrichment_switch_reads_the_environment(raw: str | None, expected: bool) -> None:
    """DT_EXPORTER_ENRICHMENT is on unless set false; blank means unset."""
    env = {} if raw is None else {"DT_EXPORTER_ENRICHMENT": raw}
    assert config.enrichment_enabled(env) is expected


def test_enrichment_switch_rejects_a_non_boolean() -> None:
    """A typo is a configuration error (setup_dynatrace raises it), naming the setting."""
    with pytest.raises(ConfigError, match="DT_EXPORTER_ENRICHMENT"):
        config.enrichment_enabled({"DT_EXPORTER_ENRICHMENT": "nope"})


def test_default_reader_with_bad_switch_warns_and_stays_on(
    tree: Tree, logged: Callable[[], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where nothing may raise (the exporter), a bad switch is one warning; enrichment stays on."""
    monkeypatch.setenv("DT_EXPORTER_ENRICHMENT", "perhaps")
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    reader = EnrichmentReader(tree.directory, tree.workdir)
    assert dict(reader.attributes()) == HOST
    assert len(logged()) == 1 and "DT_EXPORTER_ENRICHMENT" in logged()[0]


def test_default_reader_honours_the_switch(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    """DT_EXPORTER_ENRICHMENT=false turns a reader with enabled=None off."""
    monkeypatch.setenv("DT_EXPORTER_ENRICHMENT", "false")
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    assert dict(EnrichmentReader(tree.directory, tree.workdir).attributes()) == {}


def test_default_directories() -> None:
    """Unix: /var/lib/dynatrace/enrichment; Windows: %ProgramData%\\dynatrace\\enrichment."""
    assert default_directory("posix") == UNIX_DIRECTORY == "/var/lib/dynatrace/enrichment"
    assert (default_directory("nt", {"ProgramData": "C:\\ProgramData"})
            == "C:\\ProgramData\\dynatrace\\enrichment")
    assert default_directory("nt", {}) is None


def test_read_files_without_directory_reads_only_the_process_file(tree: Tree) -> None:
    """directory None (Windows without ProgramData): no pod or host files, process file still."""
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    tree.process(PROCESS)
    assert dict(read_files(None, str(tree.workdir)).attributes) == PROCESS


# -- the resource detector ------------------------------------------------------------------------


def test_detector_returns_the_attributes_as_a_resource(tree: Tree) -> None:
    """detect() is a plain Resource of the merged attributes; the SDK re-runs it after fork."""
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    tree.process(PROCESS)
    detector = DynatraceResourceDetector(directory=tree.directory, workdir=tree.workdir)
    assert dict(detector.detect().attributes) == {**HOST, **PROCESS}
    assert detector.is_process_dependent() is True
    assert detector.raise_on_error is False


def test_otel_resource_attributes_win_over_enrichment(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In the SDK's order (detectors, then OTEL_RESOURCE_ATTRIBUTES) the user's value wins."""
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "host.name=set-by-user")
    tree.write("dt_host_metadata.json", json.dumps(HOST))
    detector = DynatraceResourceDetector(directory=tree.directory, workdir=tree.workdir)
    resource = get_aggregated_resources([detector, OTELResourceDetector()], Resource.get_empty())
    assert resource.attributes["host.name"] == "set-by-user"
    assert resource.attributes["dt.entity.host"] == "HOST-1111"


def test_under_keeps_the_resources_values() -> None:
    """`under`: enrichment fills gaps only; service.name and schema URL stay the app's."""
    app = Resource({"service.name": "checkout", "host.name": "app-says"}, "https://schema/1")
    merged = under(app, {"service.name": "dt", "host.name": "dt", "dt.entity.host": "HOST-1"})
    assert dict(merged.attributes) == {"service.name": "checkout", "host.name": "app-says",
                                       "dt.entity.host": "HOST-1"}
    assert merged.schema_url == "https://schema/1"
    assert under(app, {}) is app


# -- the merge in the JSON mapper and the OTLP encoder --------------------------------------------

ENRICHMENT = {"dt.entity.host": "HOST-1", "service.name": "from-file", "host.name": "file"}
RESOURCE = Resource({"service.name": "checkout", "host.name": "app"})
SCOPE = InstrumentationScope("tests", "1.0")


def log(resource: Resource = RESOURCE) -> ReadableLogRecord:
    return ReadableLogRecord(LogRecord(body="hello", observed_timestamp=1_700_000_000 * 10**9),
                             resource=resource, instrumentation_scope=SCOPE)


def test_mapper_merges_enrichment_under_the_resource() -> None:
    """JSON: enrichment keys are added; the resource's service.name and host.name win."""
    mapper = RecordMapper(GRAIL, collections.Counter(), enrichment=ENRICHMENT)
    out = mapper.map(log())
    assert out["service.name"] == "checkout" and out["host.name"] == "app"
    assert out["dt.entity.host"] == "HOST-1"


def test_mapper_without_enrichment_is_unchanged() -> None:
    """None (the default) and an empty mapping map exactly as before."""
    plain = RecordMapper(GRAIL, collections.Counter()).map(log())
    assert RecordMapper(GRAIL, collections.Counter(), enrichment=None).map(log()) == plain
    assert RecordMapper(GRAIL, collections.Counter(), enrichment={}).map(log()) == plain
    assert "dt.entity.host" not in plain


def test_mapper_enrichment_can_be_replaced() -> None:
    """Setting `enrichment` (after a fork) takes effect at once despite the resource cache."""
    mapper = RecordMapper(GRAIL, collections.Counter(), enrichment={"dt.entity.host": "OLD"})
    record = log()
    assert mapper.map(record)["dt.entity.host"] == "OLD"
    mapper.enrichment = {"dt.entity.host": "NEW"}
    assert mapper.map(record)["dt.entity.host"] == "NEW"
    mapper.enrichment = None
    assert "dt.entity.host" not in mapper.map(record)


def encode(records: list[ReadableLogRecord], **kwargs: Any) -> list[bytes]:
    return [r.data for r in otlp.encode_log_requests(
        records, GRAIL, truncations=collections.Counter(), dropped=collections.Counter(),
        **kwargs)]


def resource_attributes(data: bytes) -> list[dict[str, str]]:
    request = ExportLogsServiceRequest.FromString(data)
    return [{kv.key: kv.value.string_value for kv in rl.resource.attributes}
            for rl in request.resource_logs]


def test_otlp_encoder_merges_enrichment_under_the_resource() -> None:
    """OTLP: the enrichment lands in Resource.attributes; the app's values win a clash."""
    (data,) = encode([log()], enrichment=ENRICHMENT)
    assert resource_attributes(data) == [
        {"service.name": "checkout", "host.name": "app", "dt.entity.host": "HOST-1"}
    ]


def test_otlp_encoder_without_enrichment_is_byte_identical() -> None:
    """None (the default) and {} give the same bytes as before the option existed."""
    records = [log()]
    assert encode(records, enrichment=None) == encode(records) == encode(records, enrichment={})


def test_otlp_equal_resources_still_share_one_group_when_enriched() -> None:
    """Two equal Resource objects make one ResourceLogs, with or without enrichment."""
    twin = Resource({"service.name": "checkout", "host.name": "app"})
    (data,) = encode([log(), log(twin), log()], enrichment=ENRICHMENT)
    request = ExportLogsServiceRequest.FromString(data)
    assert len(request.resource_logs) == 1
    assert len(request.resource_logs[0].scope_logs[0].log_records) == 3


def test_otlp_enrichment_change_takes_effect_between_calls() -> None:
    """A new enrichment object (after a fork) is used on the next call, not a cached one."""
    records = [log()]
    (first,) = encode(records, enrichment={"dt.entity.host": "OLD"})
    (second,) = encode(records, enrichment={"dt.entity.host": "NEW"})
    assert resource_attributes(first)[0]["dt.entity.host"] == "OLD"
    assert resource_attributes(second)[0]["dt.entity.host"] == "NEW"
