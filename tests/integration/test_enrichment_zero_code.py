"""Enrichment for real: entry point, `Resource.create()`, `opentelemetry-instrument`,
`setup_dynatrace()`, `os.fork()`, the default paths as root, and a JDK as the properties oracle.

Every scenario runs in a fresh subprocess: the enrichment is cached per process, and the test
must see what a starting application sees.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from dt_exporter._enrichment import PROCESS_FILE, UNIX_DIRECTORY, parse_properties
from dt_exporter.testing import DynatraceEmulator

PGI = "PROCESS_GROUP_INSTANCE-0123456789ABCDEF"
PROCESS_ATTRIBUTES = {
    "dt.entity.process_group_instance": PGI,
    "dt.entity.host": "HOST-FEDCBA9876543210",
    "host.name": "from-enrichment",
    "service.name": "from-enrichment",
}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DT_", "OTEL_"))}
    env.update(extra)
    return env


def write_process_file(workdir: Path, attributes: dict[str, Any], name: str = "attrs") -> Path:
    """What OneAgent provides: the magic file in the working directory naming the real one."""
    real = workdir / f"{name}.json"
    real.write_text(json.dumps(attributes))
    (workdir / f"{PROCESS_FILE}.json").write_text(str(real))
    return real


def run_python(code: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def last_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- the entry point and Resource.create() ------------------------------------------------------


def test_entry_point_loads_and_resource_create_uses_it(tmp_path: Path) -> None:
    """OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=dynatrace: Resource.create() carries the process
    file's attributes, and OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME still win."""
    write_process_file(tmp_path, PROCESS_ATTRIBUTES)
    code = """
        import json
        from importlib.metadata import entry_points
        from opentelemetry.sdk.resources import Resource, get_aggregated_resources
        (point,) = entry_points(group="opentelemetry_resource_detector", name="dynatrace")
        detector = point.load()()
        aggregated = get_aggregated_resources([detector], Resource.get_empty())
        print(json.dumps([dict(aggregated.attributes), dict(Resource.create().attributes)]))
    """
    env = clean_env(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="dynatrace",
                    OTEL_RESOURCE_ATTRIBUTES="host.name=set-by-user", OTEL_SERVICE_NAME="shop")
    aggregated, created = last_json(run_python(code, tmp_path, env))
    assert aggregated["dt.entity.process_group_instance"] == PGI
    assert created["dt.entity.process_group_instance"] == PGI
    assert created["dt.entity.host"] == PROCESS_ATTRIBUTES["dt.entity.host"]
    assert created["host.name"] == "set-by-user"
    assert created["service.name"] == "shop"


def test_switch_off_keeps_the_detector_empty(tmp_path: Path) -> None:
    """DT_EXPORTER_ENRICHMENT=false: even a named detector adds nothing."""
    write_process_file(tmp_path, PROCESS_ATTRIBUTES)
    code = """
        import json
        from opentelemetry.sdk.resources import Resource
        print(json.dumps(dict(Resource.create().attributes)))
    """
    env = clean_env(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="dynatrace",
                    DT_EXPORTER_ENRICHMENT="false")
    assert "dt.entity.process_group_instance" not in last_json(run_python(code, tmp_path, env))


# -- zero code ------------------------------------------------------------------------------------

APP = """
import logging
logging.getLogger().setLevel(logging.INFO)
logging.getLogger("shop").info("order accepted")
"""


def run_instrumented(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    found = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert found, "opentelemetry-instrument is installed with the dev extra"
    (tmp_path / "app.py").write_text(APP)
    return subprocess.run([found, sys.executable, "app.py"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def zero_code_env(dt: DynatraceEmulator, **extra: str) -> dict[str, str]:
    return clean_env(
        OTEL_LOGS_EXPORTER="dynatrace", OTEL_TRACES_EXPORTER="none",
        OTEL_METRICS_EXPORTER="none", OTEL_SERVICE_NAME="zero-code-app",
        DT_ENDPOINT=dt.url, DT_API_TOKEN=dt.token, **extra,
    )


def test_zero_code_with_the_named_detector(tmp_path: Path, emulator: DynatraceEmulator) -> None:
    """opentelemetry-instrument + OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=dynatrace: the record
    lands with the process's entity ids; service.name stays the app's."""
    write_process_file(tmp_path, PROCESS_ATTRIBUTES)
    env = zero_code_env(emulator, OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="dynatrace")
    result = run_instrumented(tmp_path, env)
    assert result.returncode == 0, result.stderr
    (record,) = emulator.wait_for_records(1, timeout=15)
    assert record.attributes["dt.entity.process_group_instance"] == PGI
    assert record.attributes["service.name"] == "zero-code-app"


def test_zero_code_without_any_setting(tmp_path: Path, emulator: DynatraceEmulator) -> None:
    """No enrichment setting at all: the exporter merges the files under the SDK's resource."""
    write_process_file(tmp_path, PROCESS_ATTRIBUTES)
    result = run_instrumented(tmp_path, zero_code_env(emulator))
    assert result.returncode == 0, result.stderr
    (record,) = emulator.wait_for_records(1, timeout=15)
    assert record.attributes["dt.entity.process_group_instance"] == PGI
    assert record.attributes["service.name"] == "zero-code-app"


FORKING_APP = """
import json, logging, os
from opentelemetry._logs import get_logger_provider

logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("shop")
log.info("parent")
get_logger_provider().force_flush()
# What OneAgent shows the next process: another attributes file (the parent read its own).
with open("child.json", "w") as f:
    json.dump({"dt.entity.process_group_instance": "PGI-CHILD"}, f)
with open("PROCESS_FILE.json", "w") as f:
    f.write(os.path.abspath("child.json"))
pid = os.fork()
if pid == 0:
    log.info("child")
    get_logger_provider().force_flush()
    os._exit(0)
os.waitpid(pid, 0)
""".replace("PROCESS_FILE", PROCESS_FILE)


def test_zero_code_forked_child_carries_its_own_process_attributes(
    tmp_path: Path, emulator: DynatraceEmulator
) -> None:
    """A worker forked after start-up sends its own process entity, not its parent's."""
    write_process_file(tmp_path, PROCESS_ATTRIBUTES)
    found = shutil.which("opentelemetry-instrument", path=str(Path(sys.executable).parent))
    assert found
    (tmp_path / "app.py").write_text(FORKING_APP)
    result = subprocess.run([found, sys.executable, "app.py"], cwd=tmp_path,
                            env=zero_code_env(emulator), capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    records = {r.content: r for r in emulator.wait_for_records(2, timeout=15)}
    assert records["parent"].attributes["dt.entity.process_group_instance"] == PGI
    assert records["child"].attributes["dt.entity.process_group_instance"] == "PGI-CHILD"


# -- setup_dynatrace() ----------------------------------------------------------------------------

SETUP = """
    import json
    from dt_exporter import setup_dynatrace
    from opentelemetry.sdk.resources import Resource
    try:
        handles = setup_dynatrace(
            "checkout", resource=Resource({"host.name": "app-host"}), logging_handler=False,
            set_global=False, endpoint="http://127.0.0.1:9", token="dt0c01.X.Y")
    except Exception as e:
        print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    else:
        print(json.dumps(dict(handles.logger_provider.resource.attributes)))
        handles.shutdown()
"""


def test_setup_dynatrace_merges_enrichment_under_its_resource(tmp_path: Path) -> None:
    """setup_dynatrace(): the resource gains the entity ids; the app's names win a clash."""
    write_process_file(tmp_path, PROCESS_ATTRIBUTES)
    attributes = last_json(run_python(SETUP, tmp_path, clean_env()))
    assert attributes["dt.entity.process_group_instance"] == PGI
    assert attributes["service.name"] == "checkout"
    assert attributes["host.name"] == "app-host"


def test_setup_dynatrace_with_the_switch_off(tmp_path: Path) -> None:
    """DT_EXPORTER_ENRICHMENT=false: setup_dynatrace() adds nothing."""
    write_process_file(tmp_path, PROCESS_ATTRIBUTES)
    env = clean_env(DT_EXPORTER_ENRICHMENT="false")
    assert "dt.entity.process_group_instance" not in last_json(run_python(SETUP, tmp_path, env))


def test_setup_dynatrace_rejects_a_bad_switch_loudly(tmp_path: Path) -> None:
    """Setup code fails loudly: a non-boolean DT_EXPORTER_ENRICHMENT is a ConfigError."""
    env = clean_env(DT_EXPORTER_ENRICHMENT="sometimes")
    outcome = last_json(run_python(SETUP, tmp_path, env))
    assert outcome["error"] == "ConfigError"
    assert "DT_EXPORTER_ENRICHMENT" in outcome["message"]


# -- fork -----------------------------------------------------------------------------------------

FORK = """
    import json, os, sys
    from dt_exporter import _enrichment
    from opentelemetry.sdk._logs import LoggerProvider
    from opentelemetry.sdk.resources import Resource

    provider = LoggerProvider(resource=Resource.create(), shutdown_on_exit=False)
    reader = _enrichment.default_reader()
    parent = reader.read()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        same = reader.read() is parent and reader.reads == 1
        # The child becomes another process: OneAgent names another attributes file.
        with open("child.json", "w") as f:
            json.dump({"dt.entity.process_group_instance": "PGI-CHILD"}, f)
        with open(sys.argv[1], "w") as f:
            f.write(os.path.abspath("child.json"))
        second = os.fork()  # the SDK re-runs the detector in this grandchild
        if second == 0:
            os.write(write, json.dumps({
                "same_in_child": same,
                "grandchild": dict(reader.attributes()),
                "reads": reader.reads,
                "provider": provider.resource.attributes["dt.entity.process_group_instance"],
            }).encode())
            os._exit(0)
        os.waitpid(second, 0)
        os._exit(0)
    os.waitpid(pid, 0)
    os.close(write)
    print(os.read(read, 65536).decode())
"""


def test_after_fork_unchanged_files_are_kept_and_changed_ones_reread(tmp_path: Path) -> None:
    """Real os.fork(): a child with unchanged files reuses the parent's read; a process whose
    magic file names a new file reads it, and the SDK's provider resource follows."""
    write_process_file(tmp_path, PROCESS_ATTRIBUTES)
    env = clean_env(OTEL_EXPERIMENTAL_RESOURCE_DETECTORS="dynatrace")
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(FORK), f"{PROCESS_FILE}.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    outcome = last_json(result)
    assert outcome["same_in_child"] is True
    assert outcome["grandchild"] == {"dt.entity.process_group_instance": "PGI-CHILD"}
    assert outcome["reads"] == 2
    assert outcome["provider"] == "PGI-CHILD"


# -- the real default paths, as root --------------------------------------------------------------


def test_default_paths_as_root(tmp_path: Path) -> None:
    """/var/lib/dynatrace/enrichment for real (CI runs as root): written, read by a fresh
    process through the default paths, removed afterwards."""
    assert os.geteuid() == 0, "this test writes /var/lib/dynatrace: run the suite as root (CI)"
    top = Path(UNIX_DIRECTORY).parent  # /var/lib/dynatrace
    assert not top.exists(), f"{top} exists (a real OneAgent?): not touching it"
    try:
        Path(UNIX_DIRECTORY).mkdir(parents=True)
        host = {"dt.entity.host": "HOST-ROOT-TEST", "host.name": "root-test"}
        (Path(UNIX_DIRECTORY) / "dt_host_metadata.json").write_text(json.dumps(host))
        (Path(UNIX_DIRECTORY) / "dt_metadata.properties").write_text(
            "k8s.pod.name=pod-root-test\ndt.entity.host=HOST-POD\n")
        code = """
            import json
            from dt_exporter import _enrichment
            found = _enrichment.default_reader().read()
            print(json.dumps([dict(found.attributes), [s.path for s in found.sources]]))
        """
        attributes, paths = last_json(run_python(code, tmp_path, clean_env()))
    finally:
        shutil.rmtree(top, ignore_errors=True)
    assert attributes == {"k8s.pod.name": "pod-root-test", "dt.entity.host": "HOST-POD",
                          "host.name": "root-test"}
    assert paths == [f"{UNIX_DIRECTORY}/dt_metadata.properties",
                     f"{UNIX_DIRECTORY}/dt_host_metadata.json"]
    assert not top.exists()


# -- a JDK as the oracle for .properties ----------------------------------------------------------

JAVA_DUMP = r"""
import java.io.*;
import java.nio.file.*;
import java.util.*;
public class Dump {
  public static void main(String[] args) throws Exception {
    for (String name : args) {
      Properties p = new Properties();
      try (Reader r = Files.newBufferedReader(Paths.get(name))) {  // UTF-8
        p.load(r);
      }
      StringBuilder sb = new StringBuilder();
      for (String k : new TreeSet<>(p.stringPropertyNames())) {
        sb.append(hex(k)).append(' ').append(hex(p.getProperty(k))).append(' ');
      }
      System.out.println(sb.toString().trim());
    }
  }
  static String hex(String s) {
    StringBuilder b = new StringBuilder("x");
    for (char c : s.toCharArray()) b.append(String.format("%04x", (int) c));
    return b.toString();
  }
}
"""

#: Pieces that exercise every rule of the format; files are random sequences of them.
_PIECES = ["a", "b", "key", " ", "\t", "\f", "=", ":", "\\", "\\\\", "\\=", "\\:", "\\ ", "\\t",
           "\\n", "\\u00e9", "\\u20AC", "\\uD83D\\uDE00", "#", "!", "\n", "\r\n", "\r", "\\\n",
           "\\\r\n", "é", "€", "x y", "  \\\n   ", "v"]


def _from_java(line: str) -> dict[str, str]:
    """One line of Dump.java's output: hex UTF-16 code units, key and value alternating. A lone
    surrogate (Java keeps it) becomes U+FFFD, as parse_properties makes it: text must be UTF-8."""
    words = [bytes.fromhex(w[1:]).decode("utf-16-be", "replace") for w in line.split()]
    return dict(zip(words[::2], words[1::2], strict=True))


def test_properties_parser_agrees_with_java(tmp_path: Path) -> None:
    """java.util.Properties.load is the definition of the format: 1,000 random files built from
    the tricky pieces parse to the same keys and values in Java and in parse_properties."""
    java = shutil.which("java")
    assert java, "a JDK (java 11+) is needed: .ci/run installs default-jdk-headless"
    (tmp_path / "Dump.java").write_text(JAVA_DUMP)
    rng = random.Random(15)
    texts = ["".join(rng.choice(_PIECES) for _ in range(rng.randint(1, 40))) for _ in range(1000)]
    texts += ["# c\n! c2\n  a=1\nb : 2\nc 3\nd\\ e=4\nf=x\\\n   y\\\n  z\n",
              "g=\\u00e9\\t\\q\nh=tail\\\\\n\\#k=v\nempty\nlong=\\uD83D\\uDE00\r\nw=last\\"]
    texts = [t for t in texts if not _bad_unicode_escape(t)]
    names = []
    for i, text in enumerate(texts):
        path = tmp_path / f"{i}.properties"
        path.write_bytes(text.encode("utf-8"))
        names.append(str(path))
    result = subprocess.run([java, str(tmp_path / "Dump.java"), *names], capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split("\n")[: len(texts)]
    for text, line in zip(texts, lines, strict=True):
        assert parse_properties(text) == _from_java(line), repr(text)


def _bad_unicode_escape(text: str) -> bool:
    """Java throws on a malformed \\uXXXX; those files are tested in the unit tests."""
    try:
        parse_properties(text)
    except ValueError:
        return True
    return False
