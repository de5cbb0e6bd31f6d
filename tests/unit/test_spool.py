"""The disk spool: private files, no symlink followed, locks released, recovery exactly once."""

from __future__ import annotations

import gc
import json
import os
import stat
import subprocess
import sys
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
DEAD = "12345-deadbeef"  # an owner no live process has


def body(tag: str = "a", records: int = 2) -> Body:
    return Body("logs", f'["{tag}"]'.encode(), records, "identity", oldest_ns=7)


def spool_file(data: bytes = b'["x"]', records: int = 3, *, crc: int | None = None,
               route: str = "logs") -> bytes:
    """A body file in the on-disk format written since 0.1 (magic, JSON header line, data)."""
    header = {"route": route, "encoding": "identity", "records": records, "oldest_ns": 0,
              "crc32": zlib.crc32(data) if crc is None else crc}
    return b"DTB1" + orjson.dumps(header) + b"\n" + data


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def open_fds() -> int:
    gc.collect()  # a spool another (failed) test left to the collector must not skew the count
    return len(os.listdir("/proc/self/fd"))


def fixed_token(n: int) -> str:
    return "ab" * n


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def without_identity(b: Body) -> tuple[object, ...]:
    return (b.route, b.data, b.records, b.encoding, b.oldest_ns)


# -- permissions and validation -------------------------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o000, 0o277], ids=oct)
def test_directory_parents_and_files_are_private_whatever_the_umask(tmp_path, mask):
    """Under umask 022 (and 000, and 277, which masks the owner's own bits) the spool directory
    and the parents it creates are 0700, its body and lock files 0600."""
    old = os.umask(mask)
    try:
        directory = tmp_path / "a" / "b" / "spool"
        spool = Spool(directory, MB)
        written = spool.write(body())
    finally:
        os.umask(old)
    assert [mode(p) for p in (tmp_path / "a", tmp_path / "a" / "b", directory)] == [0o700] * 3
    assert written.spool_name is not None
    assert mode(directory / written.spool_name) == 0o600
    assert mode(directory / f"{spool.owner}.lock") == 0o600
    spool.close()


def test_a_path_that_is_a_file_is_refused(tmp_path):
    """A spool path naming a regular file raises ConfigError naming the setting."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as raised:
        Spool(tmp_path / "file", MB)
    assert raised.value.setting == "DT_EXPORTER_SPOOL_DIR"
    assert "is not a directory" in raised.value.problem


def test_a_path_that_cannot_be_created_is_refused(tmp_path):
    """A spool path below a regular file cannot be created: ConfigError saying so."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as raised:
        Spool(tmp_path / "file" / "spool", MB)
    assert raised.value.setting == "DT_EXPORTER_SPOOL_DIR"
    assert raised.value.problem.startswith("cannot create")
    assert "Not a directory" in raised.value.problem


@pytest.mark.parametrize("directory_mode", [0o770, 0o720, 0o702, 0o1777], ids=oct)
def test_a_directory_others_can_write_is_refused_untouched(tmp_path, directory_mode):
    """A directory writable by group or others (sticky or not) is refused before anything is
    created in it or read from it."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(directory_mode)
    (directory / f"{DEAD}-000000000000.body").write_bytes(spool_file())
    with pytest.raises(ConfigError) as raised:
        Spool(directory, MB)
    assert raised.value.setting == "DT_EXPORTER_SPOOL_DIR"
    assert "writable by group or others" in raised.value.problem
    assert f"mode {directory_mode:04o}" in raised.value.problem
    assert os.listdir(directory) == [f"{DEAD}-000000000000.body"]
    assert mode(directory) == directory_mode


def test_a_directory_others_can_only_read_is_accepted_as_it_is(tmp_path, umask):
    """A 0755 directory is used without changing its mode: its files are 0600 regardless."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o755)
    spool = Spool(directory, MB)
    written = spool.write(body())
    assert mode(directory) == 0o755
    assert mode(directory / str(written.spool_name)) == 0o600
    spool.close()


@pytest.mark.parametrize("path", ["bad\0path", ""])
def test_an_unusable_path_raises_only_config_error(path):
    """A path with a NUL byte, or an empty one, raises ConfigError, not ValueError/OSError."""
    with pytest.raises(ConfigError) as raised:
        Spool(path, MB)
    assert raised.value.setting == "DT_EXPORTER_SPOOL_DIR"


# -- writing: no symlink followed, nothing left behind ---------------------------------------------


def test_a_temporary_name_taken_by_a_planted_symlink_is_refused_not_followed(tmp_path):
    """O_EXCL|O_NOFOLLOW: when the temporary name is taken (here by a symlink to a victim file,
    planted at a name the test predicts by injecting the randomness), write raises SpoolError,
    the victim is untouched and the planted link is left as it was."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"root only")
    spool = Spool(tmp_path / "spool", MB, token_hex=fixed_token)
    planted = tmp_path / "spool" / f".{spool.owner}-{fixed_token(8)}.tmp"
    planted.symlink_to(victim)
    with pytest.raises(SpoolError) as raised:
        spool.write(body())
    assert "File exists" in raised.value.reason
    assert victim.read_bytes() == b"root only"
    assert planted.is_symlink() and os.readlink(planted) == str(victim)
    assert spool.size() == 0
    spool.close()


def test_a_symlink_planted_at_the_next_body_name_is_replaced_not_written_through(tmp_path):
    """The rename into place replaces a symlink planted at the (predictable) body name: the
    victim is untouched and the body name now holds a regular 0600 file with the body."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"root only")
    spool = Spool(tmp_path / "spool", MB)
    planted = tmp_path / "spool" / f"{spool.owner}-000000000000.body"
    planted.symlink_to(victim)
    written = spool.write(body("v"))
    assert written.spool_name == planted.name
    assert victim.read_bytes() == b"root only"
    assert not planted.is_symlink() and mode(planted) == 0o600
    assert planted.read_bytes() == spool_file(b'["v"]', 2, route="logs").replace(
        b'"oldest_ns":0', b'"oldest_ns":7')
    spool.close()


def test_a_failed_rename_raises_spool_error_and_leaves_no_temporary_file(tmp_path):
    """When the final rename fails (a non-empty directory sits at the body name), write raises
    SpoolError, removes its temporary file and counts nothing in size()."""
    spool = Spool(tmp_path / "spool", MB)
    blocker = tmp_path / "spool" / f"{spool.owner}-000000000000.body"
    blocker.mkdir()
    (blocker / "x").write_text("x")
    with pytest.raises(SpoolError):
        spool.write(body())
    assert sorted(os.listdir(tmp_path / "spool")) == sorted([blocker.name, f"{spool.owner}.lock"])
    assert spool.size() == 0
    spool.close()


def test_remove_and_size_never_raise(tmp_path):
    """remove() ignores bodies without a file, names that are not spool names and files already
    gone; size() follows the files written and removed."""
    spool = Spool(tmp_path / "spool", MB)
    written = spool.write(body())
    assert spool.size() == (tmp_path / "spool" / str(written.spool_name)).stat().st_size
    (tmp_path / "outside").write_text("keep")
    for stray in (body(), Body("logs", b"[]", 1, "identity", spool_name="../outside")):
        spool.remove(stray)
    spool.remove(written)
    spool.remove(written)
    assert spool.size() == 0
    assert (tmp_path / "outside").read_text() == "keep"
    assert os.listdir(tmp_path / "spool") == [f"{spool.owner}.lock"]
    spool.close()


# -- close: descriptors and lock files released ----------------------------------------------------


def test_200_create_close_cycles_leave_no_descriptor_and_no_lock_file(tmp_path):
    """Each Spool holds a directory and a lock descriptor; close() releases both and removes
    its lock file: 200 cycles (each writing a body) end with the descriptors they started with
    and only the 200 bodies on disk."""
    before = open_fds()
    for i in range(200):
        spool = Spool(tmp_path / "spool", MB)
        spool.write(body(str(i)))
        spool.close()
    assert open_fds() == before
    names = os.listdir(tmp_path / "spool")
    assert [n for n in names if not n.endswith(".body")] == []
    assert len(names) == 200


def test_close_is_idempotent_and_a_closed_spool_refuses_writes_quietly(tmp_path):
    """After close() (twice), write raises SpoolError; remove, size and recover do not raise,
    and recover claims nothing."""
    spool = Spool(tmp_path / "spool", MB)
    written = spool.write(body())
    spool.close()
    spool.close()
    with pytest.raises(SpoolError) as raised:
        spool.write(body())
    assert "closed" in raised.value.reason
    assert spool.recover() == Recovered()
    spool.remove(written)
    assert spool.size() == 0
    assert os.listdir(tmp_path / "spool") == []


# -- recovery --------------------------------------------------------------------------------------


def test_a_new_spool_in_the_same_process_claims_a_closed_ones_files(tmp_path):
    """Re-created in the same process, a spool claims what the closed one left, once, under its
    own names; the bodies come back byte for byte, in write order."""
    first = Spool(tmp_path / "spool", MB)
    originals = [first.write(body(str(i))) for i in range(3)]
    first.close()
    second = Spool(tmp_path / "spool", MB)
    recovered = second.recover()
    assert [without_identity(b) for b in recovered.bodies] == [
        without_identity(b) for b in originals]
    assert all(str(b.spool_name).startswith(second.owner + "-") for b in recovered.bodies)
    assert second.size() == sum(
        (tmp_path / "spool" / str(b.spool_name)).stat().st_size for b in recovered.bodies)
    assert second.recover() == Recovered()
    second.close()


def test_an_open_spool_in_the_same_process_is_alive_and_not_claimed(tmp_path):
    """flock belongs to the open file description: a second spool in the same process sees the
    first one's lock held and leaves its files alone."""
    first = Spool(tmp_path / "spool", MB)
    written = first.write(body())
    second = Spool(tmp_path / "spool", MB)
    assert second.recover() == Recovered()
    assert (tmp_path / "spool" / str(written.spool_name)).exists()
    second.close()
    first.close()


def test_a_garbage_collected_spool_releases_its_lock(tmp_path):
    """A spool dropped without close() releases its lock when collected: its files are claimed."""
    before = open_fds()
    forgotten = Spool(tmp_path / "spool", MB)
    forgotten.write(body())
    del forgotten
    gc.collect()
    assert open_fds() == before
    survivor = Spool(tmp_path / "spool", MB)
    assert len(survivor.recover().bodies) == 1
    survivor.close()


def test_a_dead_owner_without_a_lock_file_is_claimed(tmp_path):
    """Body files whose owner has no lock file at all (it closed, or was cleaned up) are dead
    and claimed; a file 0.1 left 0644 becomes 0600 on the way."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    planted = directory / f"{DEAD}-000000000000.body"
    planted.write_bytes(spool_file(b'["old"]', 4))
    planted.chmod(0o644)
    spool = Spool(directory, MB)
    recovered = spool.recover()
    assert [(b.data, b.records) for b in recovered.bodies] == [(b'["old"]', 4)]
    assert not planted.exists()
    assert mode(directory / str(recovered.bodies[0].spool_name)) == 0o600
    spool.close()


def test_a_dead_owner_with_an_unlocked_lock_file_is_claimed_and_cleaned_up(tmp_path):
    """A lock file nobody holds means a dead owner: its bodies are claimed, its unfinished
    temporary files and its lock file removed."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    (directory / f"{DEAD}.lock").write_bytes(b"")
    (directory / f"{DEAD}-000000000000.body").write_bytes(spool_file(b'["1"]', 1))
    (directory / f"{DEAD}-000000000001.body").write_bytes(spool_file(b'["2"]', 2))
    (directory / f".{DEAD}-0123456789abcdef.tmp").write_bytes(b"DTB1{")
    (directory / f".{DEAD}-000000000002.body.tmp").write_bytes(b"DTB1{")  # 0.1's temp name
    spool = Spool(directory, MB)
    recovered = spool.recover()
    assert [b.records for b in recovered.bodies] == [1, 2]
    assert sorted(os.listdir(directory)) == sorted(
        [f"{spool.owner}.lock", *(str(b.spool_name) for b in recovered.bodies)])
    spool.close()


def test_recover_returns_each_body_once_and_never_the_spools_own_writes(tmp_path):
    """recover() called repeatedly returns only what it newly claimed: never a body it returned
    before, never one this spool wrote itself (the channel holds those already)."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    (directory / f"{DEAD}-000000000000.body").write_bytes(spool_file(b'["1"]', 1))
    spool = Spool(directory, MB)
    spool.write(body("own"))
    assert [b.data for b in spool.recover().bodies] == [b'["1"]']
    assert spool.recover() == Recovered()
    (directory / "999-0000beef-000000000000.body").write_bytes(spool_file(b'["2"]', 2))
    assert [b.data for b in spool.recover().bodies] == [b'["2"]']
    assert spool.recover() == Recovered()
    spool.close()


CORRUPT_CASES = [
    ("crc mismatch", spool_file(b'["x"]', 100, crc=1), 100),
    ("truncated data", spool_file(b'["x","y"]', 100)[:-3], 100),
    ("header not json", b"DTB1{\"route\": \"logs\", tor", 1),
    ("no header line", b"DTB1" + b"x" * 5000, 1),
    ("wrong magic", b"DTB9" + spool_file()[4:], 1),
    ("empty file", b"", 1),
    ("absurd record count", spool_file(b'["x"]', 10**9, crc=1), 1),
    ("records not a number", spool_file(b'["x"]', 3).replace(b'"records":3', b'"records":"3"'), 1),
    ("unknown encoding", spool_file().replace(b"identity", b"brotli"), 3),
]


def test_corrupt_files_are_set_aside_and_counted_in_records(tmp_path):
    """A torn or corrupt file counts the records its header names when the header is readable
    (a CRC mismatch, a truncated body), else 1; each is moved aside as *.corrupt, once."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    for i, (_, content, _) in enumerate(CORRUPT_CASES):
        (directory / f"{DEAD}-{i:012d}.body").write_bytes(content)
    spool = Spool(directory, MB)
    recovered = spool.recover()
    assert recovered.bodies == []
    assert recovered.corrupt_files == len(CORRUPT_CASES)
    assert recovered.corrupt_records == sum(lost for _, _, lost in CORRUPT_CASES) == 209
    assert len(list(directory.glob("*.body.corrupt"))) == len(CORRUPT_CASES)
    assert spool.recover() == Recovered()
    spool.close()


def test_planted_symlinks_and_fifos_are_set_aside_unread(tmp_path):
    """A symlink (to a file holding a valid body) and a FIFO under a dead owner's body names are
    never opened through: moved aside as *.foreign, counted once, the target untouched."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    target = tmp_path / "valid-body-elsewhere"
    target.write_bytes(spool_file(b'["planted"]', 1))
    (directory / f"{DEAD}-000000000000.body").symlink_to(target)
    os.mkfifo(directory / f"{DEAD}-000000000001.body")
    spool = Spool(directory, MB)
    recovered = spool.recover()
    assert recovered == Recovered(foreign_files=2)
    assert sorted(p.name for p in directory.glob("*.foreign")) == [
        f"{DEAD}-000000000000.body.foreign", f"{DEAD}-000000000001.body.foreign"]
    assert target.read_bytes() == spool_file(b'["planted"]', 1)
    assert spool.recover() == Recovered()
    spool.close()


def test_a_planted_hard_link_is_set_aside_and_its_target_left_alone(tmp_path):
    """A hard link to another of our uid's files (0644, holding a valid body) planted under a
    dead owner's body name is neither delivered nor chmod-ed: moved aside as *.foreign."""
    directory = tmp_path / "spool"
    directory.mkdir(mode=0o700)
    target = tmp_path / "config-file"
    target.write_bytes(spool_file(b'["linked"]', 1))
    target.chmod(0o644)
    os.link(target, directory / f"{DEAD}-000000000000.body")
    spool = Spool(directory, MB)
    assert spool.recover() == Recovered(foreign_files=1)
    assert mode(target) == 0o644
    assert target.read_bytes() == spool_file(b'["linked"]', 1)
    spool.close()


def run_python(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), *args],
                          capture_output=True, text=True, timeout=60, check=False)


def test_recover_skips_the_listing_when_nothing_changed_yet_sees_an_owner_die(tmp_path):
    """With the directory unchanged since the last scan, recover() lists nothing; it still
    probes the owners it saw alive, so files of a process killed meanwhile (a death changes no
    mtime) are claimed at the next call."""
    directory = tmp_path / "spool"
    script = textwrap.dedent("""
        import sys
        from dt_exporter._payload import Body
        from dt_exporter._spool import Spool
        spool = Spool(sys.argv[1], 1 << 20)
        spool.write(Body("logs", b'["held"]', 5, "identity"))
        print("ready", flush=True)
        sys.stdin.read()
    """)
    with subprocess.Popen([sys.executable, "-c", script, str(directory)], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as holder:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
            spool = Spool(directory, MB)
            old = os.stat(directory).st_mtime_ns - 10**10
            os.utime(directory, ns=(old, old))  # last change 10 s ago: a scan may be trusted
            assert spool.recover() == Recovered()
            assert spool.full_scans == 1
            assert spool.recover() == Recovered()
            assert spool.full_scans == 1  # nothing changed, the holder lives: no listing
        finally:
            holder.kill()
            holder.wait(timeout=10)
    recovered = spool.recover()
    assert [(b.data, b.records) for b in recovered.bodies] == [(b'["held"]', 5)]
    assert spool.full_scans == 2
    spool.close()


def test_a_forked_child_gets_its_own_owner_and_leaves_the_parents_lock_held(tmp_path):
    """after_fork_in_child() closes the child's copy of the lock descriptor without releasing
    the parent's lock: a third spool claims the exited child's body, not the living parent's."""
    result = run_python("""
        import json, os, sys
        from dt_exporter._payload import Body
        from dt_exporter._spool import Spool
        parent = Spool(sys.argv[1], 1 << 20)
        parent.write(Body("logs", b'["parent"]', 1, "identity"))
        pid = os.fork()
        if pid == 0:
            parent.after_fork_in_child()
            parent.write(Body("logs", b'["child"]', 2, "identity"))
            with open(sys.argv[1] + ".owner", "w") as out:
                out.write(parent.owner)
            os._exit(0)
        os.waitpid(pid, 0)
        third = Spool(sys.argv[1], 1 << 20)
        recovered = third.recover()
        print(json.dumps({
            "parent": parent.owner,
            "child": open(sys.argv[1] + ".owner").read(),
            "claimed": [[b.data.decode(), b.records] for b in recovered.bodies],
            "parent_lock": os.path.exists(os.path.join(sys.argv[1], parent.owner + ".lock")),
        }))
    """, str(tmp_path / "spool"))
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["child"] != report["parent"]
    assert report["child"].split("-")[0] != report["parent"].split("-")[0]
    assert report["claimed"] == [['["child"]', 2]]
    assert report["parent_lock"] is True
