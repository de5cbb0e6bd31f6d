"""The disk spool against a hostile machine: file-size limit, full disk, directory removed, and a
second user (`nobody`, via setpriv) trying to read spooled bodies and to plant files.

The suite runs as root (CI and the dev machine do); `setpriv` and `unshare` come with util-linux.
"""

from __future__ import annotations

import gc
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import zlib
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from dt_exporter._payload import Body
from dt_exporter._spool import Recovered, Spool
from dt_exporter.errors import ConfigError, SpoolError

MB = 1 << 20
DEAD = "12345-deadbeef"
NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
NOBODY_UID = 65534


def body(tag: str = "a", size: int = 0, records: int = 2) -> Body:
    data = f'["{tag}"]'.encode() if not size else b'["' + b"x" * (size - 4) + b'"]'
    return Body("logs", data, records, "identity")


def spool_file(data: bytes, records: int) -> bytes:
    header = {"route": "logs", "encoding": "identity", "records": records, "oldest_ns": 0,
              "crc32": zlib.crc32(data)}
    return b"DTB1" + orjson.dumps(header) + b"\n" + data


def run_python(script: str, *args: str, prefix: tuple[str, ...] = ()
               ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*NOBODY, *command], capture_output=True, text=True, timeout=30,
                          check=False)


@pytest.fixture
def public_base() -> Iterator[Path]:
    """A directory `nobody` can traverse (pytest's tmp_path sits below a 0700 directory, which
    would make every attempt fail for the wrong reason)."""
    base = Path(tempfile.mkdtemp(prefix="dt-spool-hostile-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base)


# -- resource limits and a vanishing directory ----------------------------------------------------

RLIMIT_SCRIPT = """
    import json, resource, signal, sys
    from dt_exporter.errors import SpoolError
    from dt_exporter._payload import Body
    from dt_exporter._spool import Spool
    if sys.argv[2] == "default":
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # as an embedding application may leave it
    spool = Spool(sys.argv[1], 1 << 20)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
    small = spool.write(Body("logs", b'["small"]', 1, "identity"))
    try:
        spool.write(Body("logs", b'["' + b"x" * 10_000 + b'"]', 7, "identity"))
        outcome = "written"
    except SpoolError as error:
        outcome = error.reason
    after = spool.write(Body("logs", b'["after"]', 1, "identity"))
    print(json.dumps({"outcome": outcome, "names": [small.spool_name, after.spool_name]}))
"""


@pytest.mark.parametrize("sigxfsz", ["ignored", "default"])
def test_a_body_over_rlimit_fsize_raises_spool_error_and_the_process_lives(tmp_path, sigxfsz):
    """Under RLIMIT_FSIZE 4096 a 10 kB body raises SpoolError naming the limit, even with
    SIGXFSZ at its default (kill) disposition; the process goes on spooling small bodies and
    nothing half-written is left."""
    directory = tmp_path / "spool"
    result = run_python(RLIMIT_SCRIPT, str(directory), sigxfsz)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert re.fullmatch(r"a 10\d{3}-byte body exceeds the file size limit "
                        r"\(RLIMIT_FSIZE 4096 bytes\)", report["outcome"])
    assert sorted(p.name for p in directory.iterdir()) == sorted(report["names"])


def test_without_the_size_check_sigxfsz_kills_the_process(tmp_path):
    """The hazard the spool's check avoids is real: writing past RLIMIT_FSIZE with SIGXFSZ at
    its default disposition kills the process with SIGXFSZ."""
    result = run_python("""
        import os, resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
        fd = os.open(sys.argv[1], os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, b"x" * 10_000)
        os.write(fd, b"x" * 10_000)
        print("survived")
    """, str(tmp_path / "file"))
    assert result.returncode == -signal.SIGXFSZ
    assert result.stdout == ""


def test_a_full_disk_raises_spool_error_and_leaves_no_temporary_file(tmp_path):
    """On a 64 kB tmpfs (in a private mount namespace) 16 kB bodies are spooled until ENOSPC:
    the failing write raises SpoolError, removes its partial temporary file, and what was
    written before recovers whole in the next spool."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    script = """
        import json, os, sys
        from dt_exporter.errors import SpoolError
        from dt_exporter._payload import Body
        from dt_exporter._spool import Spool
        spool = Spool(sys.argv[1], 1 << 20)
        written, reason = 0, None
        for i in range(20):
            try:
                spool.write(Body("logs", b'["' + b"x" * 16_000 + b'"]', 3, "identity"))
                written += 1
            except SpoolError as error:
                reason = error.reason
                break
        names = sorted(os.listdir(sys.argv[1]))
        spool.close()
        again = Spool(sys.argv[1], 1 << 20)
        recovered = again.recover()
        print(json.dumps({"written": written, "reason": reason, "names": names,
                          "recovered": [b.records for b in recovered.bodies],
                          "corrupt": recovered.corrupt_files}))
    """
    mount = f"mount -t tmpfs -o size=64k,mode=0700 tmpfs {directory} && exec \"$@\""
    result = run_python(script, str(directory),
                        prefix=("unshare", "--mount", "sh", "-c", mount, "sh"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["reason"].endswith("No space left on device")
    assert [n for n in report["names"] if n.endswith(".tmp")] == []
    assert len([n for n in report["names"] if n.endswith(".body")]) == report["written"]
    assert report["written"] >= 1
    assert report["recovered"] == [3] * report["written"]
    assert report["corrupt"] == 0


def test_a_directory_removed_mid_run_degrades_without_raising_elsewhere(tmp_path):
    """With the directory removed under it, write raises SpoolError (no such directory) while
    remove, size, recover and close go on quietly; descriptors are released."""
    gc.collect()
    before = len(os.listdir("/proc/self/fd"))
    directory = tmp_path / "spool"
    spool = Spool(directory, MB)
    first = spool.write(body("1"))
    shutil.rmtree(directory)
    with pytest.raises(SpoolError) as raised:
        spool.write(body("2"))
    assert raised.value.reason.endswith("No such file or directory")
    assert spool.recover() == Recovered()
    spool.remove(first)
    assert spool.size() == 0
    spool.close()
    assert len(os.listdir("/proc/self/fd")) == before
    assert not directory.exists()


def test_a_path_swapped_for_a_symlink_does_not_redirect_the_spool(tmp_path):
    """The directory is held open: after its path is renamed away and replaced by a symlink to
    another directory, bodies still go to the original directory, none to the link's target."""
    directory, moved, elsewhere = tmp_path / "spool", tmp_path / "moved", tmp_path / "elsewhere"
    elsewhere.mkdir()
    spool = Spool(directory, MB)
    directory.rename(moved)
    directory.symlink_to(elsewhere)
    written = spool.write(body())
    assert (moved / str(written.spool_name)).is_file()
    assert list(elsewhere.iterdir()) == []
    spool.close()


# -- a second user ---------------------------------------------------------------------------------


def test_nobody_can_reach_the_sandbox(public_base):
    """Control for the tests below: `nobody` reads a 0644 file in the public base directory, so
    their failures come from the spool's permissions, not from the test's setup."""
    (public_base / "readable").write_text("open")
    (public_base / "readable").chmod(0o644)
    result = as_nobody("cat", str(public_base / "readable"))
    assert (result.returncode, result.stdout) == (0, "open")


@pytest.mark.parametrize("precreated_mode", [None, 0o755], ids=["created", "0o755"])
def test_another_user_cannot_read_a_spooled_body(public_base, precreated_mode):
    """`nobody` cannot read a spooled body: not in a directory the spool created (0700), nor in
    a pre-existing 0755 directory (the file itself is 0600)."""
    directory = public_base / "spool"
    if precreated_mode is not None:
        directory.mkdir()
        directory.chmod(precreated_mode)
    old = os.umask(0o022)
    try:
        spool = Spool(directory, MB)
        written = spool.write(body("secret log line"))
    finally:
        os.umask(old)
    result = as_nobody("cat", str(directory / str(written.spool_name)))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Permission denied" in result.stderr
    spool.close()


def test_another_user_cannot_plant_a_symlink_or_a_body_in_the_spool(public_base):
    """In the spool's 0700 directory `nobody` can create neither a symlink nor a body file:
    both are refused and the directory holds only the spool's own files."""
    directory = public_base / "spool"
    spool = Spool(directory, MB)
    spool.write(body())
    names = sorted(os.listdir(directory))
    link = as_nobody("ln", "-s", "/etc/shadow", str(directory / f"{DEAD}-000000000000.body"))
    plant = as_nobody("sh", "-c", f"echo planted > {directory}/{DEAD}-000000000001.body")
    assert link.returncode == 1 and "Permission denied" in link.stderr
    assert plant.returncode != 0 and "Permission denied" in plant.stderr
    assert sorted(os.listdir(directory)) == names
    spool.close()


@pytest.mark.parametrize("directory_mode", [0o777, 0o1777], ids=oct)
def test_a_directory_another_user_can_write_is_refused_before_reading_anything(
        public_base, directory_mode):
    """When `nobody` can write the directory (and has planted a symlink to a root-only file and
    a well-formed body under a dead owner's names), the spool refuses it with ConfigError and
    neither follows, reads nor moves the planted files."""
    victim = public_base / "victim"
    victim.write_bytes(b"root only")
    victim.chmod(0o600)
    directory = public_base / "shared"
    directory.mkdir()
    directory.chmod(directory_mode)
    link = as_nobody("ln", "-s", str(victim), str(directory / f"{DEAD}-000000000000.body"))
    planted = spool_file(b'["planted by nobody"]', 1)
    plant = subprocess.run([*NOBODY, "sh", "-c", f"cat > {directory}/{DEAD}-000000000001.body"],
                           input=planted, capture_output=True, timeout=30, check=False)
    assert (link.returncode, plant.returncode) == (0, 0)
    with pytest.raises(ConfigError) as raised:
        Spool(directory, MB)
    assert raised.value.setting == "DT_EXPORTER_SPOOL_DIR"
    assert "writable by group or others" in raised.value.problem
    assert sorted(os.listdir(directory)) == [f"{DEAD}-000000000000.body",
                                             f"{DEAD}-000000000001.body"]
    assert victim.read_bytes() == b"root only"


def test_a_directory_owned_by_another_user_is_refused(public_base):
    """A private (0700) directory owned by `nobody` is refused: its owner could read and plant."""
    directory = public_base / "theirs"
    directory.mkdir(mode=0o700)
    os.chown(directory, NOBODY_UID, NOBODY_UID)
    with pytest.raises(ConfigError) as raised:
        Spool(directory, MB)
    assert raised.value.problem.startswith(f"{directory} is owned by uid {NOBODY_UID}, not by "
                                           f"this process's uid {os.geteuid()}")
    assert os.listdir(directory) == []


def test_files_planted_before_the_directory_was_made_private_are_set_aside_unread(
        public_base, caplog):
    """Files `nobody` planted while the directory was open to all (a symlink to a root-only file
    holding a valid body, and a well-formed body of their own) are not delivered once it is made
    0700: both moved aside as *.foreign, counted, one warning; the victim untouched."""
    victim = public_base / "victim"
    victim.write_bytes(spool_file(b'["root only"]', 1))
    victim.chmod(0o600)
    directory = public_base / "spool"
    directory.mkdir()
    directory.chmod(0o777)
    link = as_nobody("ln", "-s", str(victim), str(directory / f"{DEAD}-000000000000.body"))
    plant = subprocess.run([*NOBODY, "sh", "-c", f"cat > {directory}/{DEAD}-000000000001.body"],
                           input=spool_file(b'["planted"]', 1), capture_output=True, timeout=30,
                           check=False)
    assert (link.returncode, plant.returncode) == (0, 0)
    directory.chmod(0o700)  # the administrator fixes the mode; the planted files remain
    spool = Spool(directory, MB)
    recovered = spool.recover()
    assert recovered == Recovered(foreign_files=2)
    assert sorted(p.name for p in directory.glob("*.foreign")) == [
        f"{DEAD}-000000000000.body.foreign", f"{DEAD}-000000000001.body.foreign"]
    assert victim.read_bytes() == spool_file(b'["root only"]', 1)
    warnings = [r for r in caplog.records if r.name == "dt_exporter._spool"]
    assert [r.getMessage() for r in warnings] == [
        f"dt_exporter: 2 entries in the spool {directory} are not regular files owned by uid 0:"
        " moved aside as *.foreign, not read"]
    assert spool.recover() == Recovered()
    spool.close()
