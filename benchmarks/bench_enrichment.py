"""Start-up cost of reading Dynatrace's enrichment files, against `Resource.create()`.

Scenarios, each in a temporary root laid out like a monitored host (nothing outside it is read):
- none: no file exists (the common case off Dynatrace): stats and failed opens only;
- all JSON: the process file's indirection, dt_metadata.json and dt_host_metadata.json, each
  with the attributes Dynatrace writes (a dozen keys, host tags and properties included);
- all .properties: the same, in the properties twins (the JSON files absent);
- cached: a later call in the same process (what every export pays);
- after fork, unchanged: the first call in a child (pid differs): stats and the indirection only.

Each figure is the median of BENCH_REPEAT_ENRICHMENT fresh readers (first read, no cache).
Baseline: `Resource.create()` with no OTEL_* variables, as every SDK start-up calls it.

Run: python benchmarks/bench_enrichment.py
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _common import print_table
from opentelemetry.sdk.resources import Resource

from dt_exporter._enrichment import PROCESS_FILE, EnrichmentReader

REPEAT = int(os.environ.get("BENCH_REPEAT_ENRICHMENT", "2000"))

HOST = {
    "dt.entity.host": "HOST-0123456789ABCDEF",
    "host.name": "ip-10-0-12-34.eu-west-1.compute.internal",
    "dt.host_group.id": "shop-production",
    "dt.security_context": "shop",
    "dt.cost.costcenter": "cc-4711",
    "dt.cost.product": "checkout",
    "team": "payments",
    "environment": "production",
}
POD = {
    "dt.kubernetes.cluster.id": "c0ffee00-0000-4000-8000-000000000001",
    "dt.kubernetes.cluster.name": "prod-eu",
    "k8s.cluster.uid": "c0ffee00-0000-4000-8000-000000000001",
    "k8s.namespace.name": "shop",
    "k8s.pod.name": "checkout-7d9f8b6c5-x2k4p",
    "k8s.pod.uid": "a1b2c3d4-0000-4000-8000-000000000002",
    "k8s.container.name": "checkout",
    "k8s.workload.kind": "deployment",
    "k8s.workload.name": "checkout",
    "dt.entity.kubernetes_cluster": "KUBERNETES_CLUSTER-0123456789ABCDEF",
}
PROCESS = {
    "dt.entity.process_group_instance": "PROCESS_GROUP_INSTANCE-0123456789ABCDEF",
    "dt.entity.process_group": "PROCESS_GROUP-0123456789ABCDEF",
    "dt.entity.host": "HOST-0123456789ABCDEF",
    "dt.host_group.id": "shop-production",
}


def properties(attributes: dict[str, str]) -> str:
    return "# written by the benchmark\n" + "".join(f"{k}={v}\n" for k, v in attributes.items())


def lay_out(root: Path, suffix: str | None) -> tuple[Path, Path]:
    """An enrichment directory and a working directory; files in `suffix` format, or none."""
    directory, workdir = root / "enrichment", root / "app"
    directory.mkdir(parents=True)
    workdir.mkdir()
    if suffix is not None:
        write = json.dumps if suffix == ".json" else properties
        (directory / f"dt_host_metadata{suffix}").write_text(write(HOST))
        (directory / f"dt_metadata{suffix}").write_text(write(POD))
        real = root / "proc" / f"attributes{suffix}"
        real.parent.mkdir()
        real.write_text(write(PROCESS))
        (workdir / f"{PROCESS_FILE}{suffix}").write_text(str(real))
    return directory, workdir


def median_us(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter_ns()
        fn()
        samples.append(time.perf_counter_ns() - started)
    return statistics.median(samples) / 1000


def first_read(directory: Path, workdir: Path) -> Callable[[], object]:
    return lambda: EnrichmentReader(directory, workdir, enabled=True).read()


def after_fork(directory: Path, workdir: Path) -> Callable[[], object]:
    """A reader whose pid changes before each call: the child's first call, files unchanged."""
    pid = [0]
    reader = EnrichmentReader(directory, workdir, enabled=True, getpid=lambda: pid[0])
    reader.read()

    def call() -> object:
        pid[0] += 1
        return reader.read()

    return call


def main() -> None:
    for key in [k for k in os.environ if k.startswith("OTEL_")]:
        del os.environ[key]  # the baseline is the SDK's default start-up
    with tempfile.TemporaryDirectory() as tmp:
        roots = {name: lay_out(Path(tmp) / name, suffix)
                 for name, suffix in (("none", None), ("json", ".json"),
                                      ("properties", ".properties"))}
        found = EnrichmentReader(*roots["json"], enabled=True).read()
        assert len(found.sources) == 3, found
        assert EnrichmentReader(*roots["properties"], enabled=True).read().attributes == (
            found.attributes)
        baseline = median_us(Resource.create, max(REPEAT // 10, 50))
        cached_reader = EnrichmentReader(*roots["json"], enabled=True)
        cached_reader.read()
        rows_in = [
            ("first read, no file exists", first_read(*roots["none"])),
            ("first read, all 3 levels as JSON", first_read(*roots["json"])),
            ("first read, all 3 levels as .properties", first_read(*roots["properties"])),
            ("after fork, files unchanged (JSON)", after_fork(*roots["json"])),
            ("cached (every later call)", cached_reader.attributes),
        ]
        rows = []
        for name, fn in rows_in:
            us = median_us(fn)
            rows.append([name, f"{us:.1f}", f"{us / baseline:.2f}x"])
        rows.append(["`Resource.create()` (baseline)", f"{baseline:.1f}", "1.00x"])
    print_table(
        f"Enrichment start-up cost (median of {REPEAT}; {len(found.attributes)} attributes "
        "from 3 files)",
        ["scenario", "µs", "vs Resource.create()"], rows,
    )


if __name__ == "__main__":
    main()
