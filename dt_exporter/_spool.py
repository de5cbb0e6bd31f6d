"""The disk spool: request bodies that outlive the process, private to its user, fail-safe.

Each queued body is also one file, written before `export()` returns and removed once Dynatrace
took it (or it was dropped for good). After a crash or `kill -9`, the next exporter using the same
directory delivers what is left: at least once, so what it recovers is counted as
`possible_duplicates`. Only bodies are written: never the token, never headers.

Privacy. The directory (and every parent the spool creates) is made 0700 and every file 0600,
whatever the umask (an explicit `fchmod` after creation). The constructor refuses, with
`ConfigError("DT_EXPORTER_SPOOL_DIR", reason)`, a path that is not a directory or cannot be
created, a directory owned by another user than the effective uid, or one writable by group or
others (another user could plant bodies or symlinks there). A directory that is merely readable
by others is accepted as it is: every file in it is 0600, so others see names and sizes, never a
record; and chmod-ing a directory the user made (perhaps `/var` by mistake) is not ours to do.

No symlink is ever followed. The directory is opened once and every operation is relative to
that descriptor, so renaming or replacing the path afterwards cannot redirect the spool. Files
are created with `O_CREAT | O_EXCL | O_NOFOLLOW` under unpredictable temporary names, then renamed
into place (a rename replaces a planted symlink, it never writes through it). Recovery opens with
`O_NOFOLLOW | O_NONBLOCK` and reads only regular files owned by the effective uid with a single
link (a planted hard link is someone else's file); anything else is renamed aside as
`*.foreign`, counted (`Recovered.foreign_files`) and warned about once.

Failure. `write()` raises only `SpoolError`, after removing its temporary file: the channel then
keeps that body in memory only. A body larger than `RLIMIT_FSIZE` is refused before a byte is
written, so SIGXFSZ is never raised by the spool even where its disposition is the default (kill):
CPython ignores it, an embedding application may not. `remove()`, `size()`, `recover()` and
`close()` never raise. Durability: no fsync (as before). The spool guards against the process
dying (`kill -9`, OOM, a crash), not the machine: a file torn by a power loss fails its CRC and
is counted as corrupt. An fsync per body would cost milliseconds on the application's thread.

Owners. Several processes (and several exporters in one process) may share a directory. Each
`Spool` is one owner `<pid>-<8 hex>`: it holds an exclusive `flock` on `<owner>.lock` (created
locked under a private name, then renamed into place, so no prober ever sees it unlocked) and
names its files `<owner>-<sequence>.body`. An owner is dead when nobody holds its lock, or when
its lock file is gone (it closed, or it died and was cleaned up). `recover()` claims the files of
every dead owner by renaming them to its own names (atomic: exactly one claimant wins) and
returns each claimed body once. `flock` locks belong to open file descriptions, so another
`Spool` in the same process sees a live owner as live, and `close()` (or garbage collection)
makes it dead. Files left at close stay on disk, claimable by the next exporter.

File layout (unchanged since 0.1, so old spools recover): 4-byte magic `DTB1`, a JSON header
line (route, encoding, records, oldest_ns, crc32 of the data), then the data. A torn or corrupt
file is moved aside as `*.corrupt` and counted: `corrupt_records` takes the header's record count
when the header is readable, 1 per file otherwise.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import logging
import os
import re
import resource
import secrets
import stat
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, cast

import orjson

from dt_exporter._payload import Body, Encoding
from dt_exporter.errors import ConfigError, SpoolError

_log = logging.getLogger(__name__)

SETTING: Final = "DT_EXPORTER_SPOOL_DIR"
MAGIC: Final = b"DTB1"
SUFFIX: Final = ".body"
LOCK_SUFFIX: Final = ".lock"
CORRUPT_SUFFIX: Final = ".corrupt"
FOREIGN_SUFFIX: Final = ".foreign"

_OWNER: Final = r"\d+-[0-9a-f]{8}"
_BODY_NAME: Final = re.compile(rf"({_OWNER})-\d{{12,}}\.body")
_LOCK_NAME: Final = re.compile(rf"({_OWNER})\.lock")
# Temporary files: ours (`.<owner>-<16 hex>.tmp`) and 0.1's (`.<body name>.tmp`).
_TEMP_NAME: Final = re.compile(rf"\.({_OWNER})-(?:[0-9a-f]{{16}}|\d{{12,}}\.body)\.tmp")

_NEW: Final = os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ: Final = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_DIRECTORY: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
#: A JSON header line is ~150 bytes; a longer one is not ours.
_MAX_HEADER: Final = 4096
#: No body file is larger (Dynatrace takes at most 10 MB per request): a bigger one is corrupt.
_MAX_FILE_BYTES: Final = 64 * 1024 * 1024
#: A header we cannot verify (its data failed the CRC) is believed up to this many records.
_MAX_RECORDS_PER_BODY: Final = 1_000_000
#: The directory's mtime is trusted as "nothing changed" only once it is this old: a change in
#: the same coarse clock tick as our scan would leave it equal (git's "racy" index rule).
_RACY_NS: Final = 2_000_000_000


@dataclass(frozen=True, slots=True)
class Recovered:
    """What one `recover()` call claimed: bodies to queue, and what could not be read."""

    bodies: list[Body] = field(default_factory=list)
    corrupt_records: int = 0  # header's record count where readable, else 1 per file
    corrupt_files: int = 0  # moved aside as *.corrupt
    foreign_files: int = 0  # not a regular file owned by us: moved aside as *.foreign, unread


@dataclass(slots=True)
class _Tally:
    bodies: list[Body] = field(default_factory=list)
    corrupt_records: int = 0
    corrupt_files: int = 0
    foreign_files: int = 0

    def result(self) -> Recovered:
        return Recovered(self.bodies, self.corrupt_records, self.corrupt_files,
                         self.foreign_files)


class Spool:
    """One owner's view of a spool directory (see the module docstring for the rules)."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        max_bytes: int,
        *,
        token_hex: Callable[[int], str] = secrets.token_hex,
    ) -> None:
        """Open (creating it 0700 if needed) and validate `directory`; take a fresh owner.

        Raises only `ConfigError` naming `DT_EXPORTER_SPOOL_DIR`. `token_hex` makes owner ids
        and temporary names (tests inject it to plant files at a name they know).
        """
        try:
            if not os.fspath(directory):
                raise ConfigError(SETTING, "is empty")
            self.directory = Path(directory)
        except TypeError:
            raise ConfigError(SETTING, "is not a path") from None
        self.max_bytes = max_bytes
        #: How many times `recover()` listed the directory (it skips when nothing changed).
        self.full_scans = 0
        self._token_hex = token_hex
        self._reset_state()
        self._closed = False
        try:
            self._dir_fd = _open_private_directory(self.directory)
        except ConfigError:
            raise
        except Exception as error:  # e.g. a NUL byte in the path: ValueError
            raise ConfigError(SETTING, f"unusable path: {error}") from None
        try:
            self._open_owner()
        except Exception as error:
            os.close(self._dir_fd)
            reason = error.strerror if isinstance(error, OSError) else str(error)
            raise ConfigError(SETTING, f"cannot create a lock file in {self.directory}: "
                                       f"{reason}") from None

    def _reset_state(self) -> None:
        """Fresh per-process state: at start, and in a forked child."""
        self._state = threading.Condition(threading.Lock())
        self._recovering = threading.Lock()  # one recover() at a time
        self._active = 0  # operations using the directory descriptor right now
        self._sizes: dict[str, int] = {}  # our files (written or claimed) and their sizes
        self._bytes = 0
        self._pending: set[str] = set()  # claimed, unread (a read failed for a passing reason)
        self._live: set[str] = set()  # other owners with files, alive at the last full scan
        self._scan_mtime: int | None = None  # directory mtime of the last full scan, if trustworthy
        self._foreign_seen: set[str] = set()  # foreign entries already counted and warned about

    def _open_owner(self) -> None:
        pid = os.getpid()
        owner = f"{pid}-{self._token_hex(4)}"
        lock_name = owner + LOCK_SUFFIX
        # Created and locked under a name no prober looks at, then renamed into place: a prober
        # never finds this owner's lock file unlocked (and so never takes it for dead).
        staging = f".{owner}{LOCK_SUFFIX}.new"
        fd = os.open(staging, _NEW, 0o600, dir_fd=self._dir_fd)
        try:
            os.fchmod(fd, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(staging, lock_name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(staging, dir_fd=self._dir_fd)
            os.close(fd)
            raise
        self.owner = owner
        self._pid = pid
        self._lock_fd = fd
        self._sequence = itertools.count()
        self._finalizer = weakref.finalize(self, _release, self._dir_fd, fd, lock_name, pid)

    def after_fork_in_child(self) -> None:
        """The child drops its copy of the parent's lock descriptor (the lock stays the parent's:
        it belongs to the open file description, which the parent still holds; closing a copy
        never releases it, unlike `LOCK_UN`) and takes an owner of its own. Never raises."""
        try:
            self._finalizer.detach()
            self._reset_state()
            with contextlib.suppress(OSError):
                os.close(self._lock_fd)
            self._lock_fd = -1
            if self._closed:
                return
            try:
                self._open_owner()
            except Exception:  # no owner: this child runs without a spool (writes fail)
                self._closed = True
                self._finalizer = weakref.finalize(self, _release, self._dir_fd, -1, "", -1)
                self._finalizer()
        except Exception:
            _log.warning("dt_exporter: the spool %s is unusable in this child process",
                         self.directory, exc_info=True)

    def close(self) -> None:
        """Release the lock and remove the lock file: files left here become claimable by the
        next exporter (in this process or another). Idempotent; never raises."""
        with self._state:
            if self._closed:
                return
            self._closed = True
            release = self._active == 0  # else the last operation in flight releases
        if release:
            self._finalizer()

    @contextlib.contextmanager
    def _using(self) -> Iterator[int | None]:
        """The directory descriptor, kept open for the duration (None once closed): `close()` on
        another thread never closes it under us, so its number cannot be reused meanwhile."""
        with self._state:
            if self._closed:
                fd = None
            else:
                self._active += 1
                fd = self._dir_fd
        try:
            yield fd
        finally:
            if fd is not None:
                with self._state:
                    self._active -= 1
                    release = self._closed and self._active == 0
                if release:
                    self._finalizer()

    def _check_pid(self) -> None:
        if os.getpid() != self._pid:  # forked, and nobody told us: never write under the
            self.after_fork_in_child()  # parent's names (our sequences would collide)

    # -- writing and removing ------------------------------------------------------------------

    def write(self, body: Body) -> Body:
        """Persist `body` and return it tagged with its file name; `SpoolError` if it could not
        be persisted (nothing is left behind then)."""
        try:
            self._check_pid()
            with self._using() as directory:
                if directory is None:
                    raise SpoolError(f"the spool {self.directory} is closed")
                return self._write(directory, body)
        except SpoolError:
            raise
        except Exception as error:
            raise SpoolError(f"cannot write to the spool {self.directory}: {error}") from None

    def _write(self, directory: int, body: Body) -> Body:
        content = _encode(body)
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY and len(content) > limit:
            raise SpoolError(f"a {len(content)}-byte body exceeds the file size limit "
                             f"(RLIMIT_FSIZE {limit} bytes)")
        with self._state:
            name = f"{self.owner}-{next(self._sequence):012d}{SUFFIX}"
        temporary = f".{self.owner}-{self._token_hex(8)}.tmp"
        try:
            fd = _create_private(temporary, directory)
        except OSError as error:
            raise SpoolError(f"cannot create a file in the spool {self.directory}: "
                             f"{error.strerror}") from None
        try:
            try:
                _write_all(fd, content)
            finally:
                os.close(fd)
            os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        except OSError as error:
            with contextlib.suppress(OSError):
                os.unlink(temporary, dir_fd=directory)
            raise SpoolError(f"cannot write to the spool {self.directory}: "
                             f"{error.strerror}") from None
        with self._state:
            self._sizes[name] = len(content)
            self._bytes += len(content)
        return replace(body, spool_name=name)

    def remove(self, body: Body) -> None:
        """Delete the body's file (delivered, or dropped for good). Never raises."""
        name = body.spool_name
        if not name or not _BODY_NAME.fullmatch(name):
            return
        try:
            with self._state:
                self._bytes -= self._sizes.pop(name, 0)
            with self._using() as directory, contextlib.suppress(OSError):
                if directory is None:
                    os.unlink(self.directory / name)  # closed: still ours unless claimed since
                else:
                    os.unlink(name, dir_fd=directory)
        except Exception:
            _log.debug("dt_exporter: could not remove %s from the spool", name, exc_info=True)

    def size(self) -> int:
        """Bytes in the files this spool wrote or claimed and has not removed. Never raises."""
        return self._bytes

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Claim the files of every dead owner and return the bodies not returned before.

        Cheap when nothing changed: if the directory's mtime is what the last scan saw, only the
        locks of the owners then alive are probed (a process dying changes no mtime). Never
        raises: a failure is logged and what was claimed so far is kept for the next call.
        """
        tally = _Tally()
        try:
            self._check_pid()
            with self._recovering, self._using() as directory:
                if directory is not None:
                    self._recover(directory, tally)
        except Exception:
            _log.warning("dt_exporter: could not scan the spool %s", self.directory,
                         exc_info=True)
        if tally.foreign_files:
            _log.warning("dt_exporter: %d entries in the spool %s are not regular files owned by "
                         "uid %d: moved aside as *%s, not read", tally.foreign_files,
                         self.directory, os.geteuid(), FOREIGN_SUFFIX)
        return tally.result()

    def _recover(self, directory: int, tally: _Tally) -> None:
        mtime = os.fstat(directory).st_mtime_ns
        if (mtime == self._scan_mtime and not self._pending
                and not any(self._is_dead(owner, directory) for owner in sorted(self._live))):
            return
        self.full_scans += 1
        bodies: dict[str, list[str]] = {}
        temporaries: dict[str, list[str]] = {}
        locks: set[str] = set()
        for name in _list(directory):
            if match := _BODY_NAME.fullmatch(name):
                bodies.setdefault(match[1], []).append(name)
            elif match := _LOCK_NAME.fullmatch(name):
                locks.add(match[1])
            elif match := _TEMP_NAME.fullmatch(name):
                temporaries.setdefault(match[1], []).append(name)
        live: set[str] = set()
        for owner in sorted((bodies.keys() | locks | temporaries.keys()) - {self.owner}):
            dead, lock_fd = self._probe(owner, directory)
            if not dead:
                if owner in bodies:
                    live.add(owner)
                continue
            try:
                for name in sorted(bodies.get(owner, ())):
                    self._claim(name, directory, tally)
                for name in temporaries.get(owner, ()):  # a write it never finished
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=directory)
                if owner in locks:
                    with contextlib.suppress(OSError):
                        os.unlink(owner + LOCK_SUFFIX, dir_fd=directory)
            finally:
                if lock_fd is not None:
                    os.close(lock_fd)
        for name in sorted(self._pending):
            self._read_claimed(name, directory, tally)
        self._live = live
        fresh = time.time_ns() - mtime < _RACY_NS
        self._scan_mtime = None if fresh else mtime

    def _is_dead(self, owner: str, directory: int) -> bool:
        dead, lock_fd = self._probe(owner, directory)
        if lock_fd is not None:
            os.close(lock_fd)
        return dead

    def _probe(self, owner: str, directory: int) -> tuple[bool, int | None]:
        """(dead, the lock descriptor we now hold or None). Dead: nobody holds its lock, or its
        lock file is missing or not a plain file. Unsure (e.g. out of descriptors): alive."""
        try:
            fd = os.open(owner + LOCK_SUFFIX, _READ, dir_fd=directory)
        except (FileNotFoundError, NotADirectoryError):
            return True, None
        except OSError as error:
            return error.errno == errno.ELOOP, None  # ELOOP: a symlink planted as a lock file
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False, None
        return True, fd

    def _claim(self, name: str, directory: int, tally: _Tally) -> None:
        """Rename a dead owner's file to one of ours (if it is a regular file owned by us)."""
        try:
            status = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except OSError:  # gone: another exporter claimed it first
            return
        if not _trusted(status):
            self._set_aside_foreign(name, directory, tally)
            return
        with self._state:
            claimed = f"{self.owner}-{next(self._sequence):012d}{SUFFIX}"
        try:
            os.rename(name, claimed, src_dir_fd=directory, dst_dir_fd=directory)
        except OSError:  # FileNotFoundError: another exporter won; otherwise: next time
            return
        self._pending.add(claimed)

    def _read_claimed(self, name: str, directory: int, tally: _Tally) -> None:
        try:
            fd = os.open(name, _READ, dir_fd=directory)
        except FileNotFoundError:
            self._pending.discard(name)
            return
        except OSError as error:
            if error.errno == errno.ELOOP:  # swapped for a symlink after we claimed it
                self._set_aside_foreign(name, directory, tally)
            return  # anything else (EMFILE, EIO...): stays pending, tried again next call
        try:
            status = os.fstat(fd)
            if not _trusted(status):
                outcome: Body | int | None = None
            else:
                if stat.S_IMODE(status.st_mode) & 0o077:  # written by 0.1 under umask 022
                    os.fchmod(fd, 0o600)
                outcome = _decode(_read_bounded(fd, _MAX_FILE_BYTES), name)
        except OSError:
            return  # stays pending
        finally:
            os.close(fd)
        self._pending.discard(name)
        if outcome is None:
            self._set_aside_foreign(name, directory, tally)
        elif isinstance(outcome, int):
            tally.corrupt_files += 1
            tally.corrupt_records += outcome
            if not _rename_aside(name, name + CORRUPT_SUFFIX, directory):
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=directory)
        else:
            tally.bodies.append(outcome)
            with self._state:
                self._sizes[name] = status.st_size
                self._bytes += status.st_size

    def _set_aside_foreign(self, name: str, directory: int, tally: _Tally) -> None:
        self._pending.discard(name)
        if name in self._foreign_seen:
            return
        tally.foreign_files += 1
        if not _rename_aside(name, name + FOREIGN_SUFFIX, directory):
            self._foreign_seen.add(name)  # could not move it: at least never count it twice


def _release(directory: int, lock_fd: int, lock_name: str, pid: int) -> None:
    """Close an owner's descriptors; remove its lock file only in the process that made it (a
    forked child must not make its parent look dead)."""
    if lock_fd >= 0:
        if os.getpid() == pid:
            with contextlib.suppress(OSError):
                os.unlink(lock_name, dir_fd=directory)
        with contextlib.suppress(OSError):
            os.close(lock_fd)
    with contextlib.suppress(OSError):
        os.close(directory)


def _open_private_directory(path: Path) -> int:
    """Create `path` (and missing parents) 0700, open it, and check it is ours and private."""
    try:
        _make_private_directories(path)
    except OSError as error:
        raise ConfigError(SETTING, f"cannot create {path}: {error.strerror}") from None
    try:
        fd = os.open(path, _DIRECTORY)
    except NotADirectoryError:
        raise ConfigError(SETTING, f"{path} is not a directory") from None
    except OSError as error:
        raise ConfigError(SETTING, f"cannot open {path}: {error.strerror}") from None
    try:
        status = os.fstat(fd)
        euid = os.geteuid()
        if status.st_uid != euid:
            raise ConfigError(SETTING, f"{path} is owned by uid {status.st_uid}, not by this "
                                       f"process's uid {euid}: its owner could read and plant "
                                       "spooled bodies")
        mode = stat.S_IMODE(status.st_mode)
        if mode & 0o022:
            raise ConfigError(SETTING, f"{path} is writable by group or others (mode {mode:04o}):"
                                       " another user could plant bodies or symlinks; make it "
                                       "0700 (chmod 700)")
    except BaseException:
        os.close(fd)
        raise
    return fd


def _make_private_directories(path: Path) -> None:
    missing: list[Path] = []
    current = path
    while not os.path.lexists(current) and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # created meanwhile by someone else: checked like any other
            continue
        fd = os.open(directory, _DIRECTORY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, 0o700)  # the umask may have taken bits from 0o700
        finally:
            os.close(fd)


def _create_private(name: str, directory: int) -> int:
    """A new 0600 file: fails (FileExistsError) on anything already there, a symlink included."""
    fd = os.open(name, _NEW, 0o600, dir_fd=directory)
    try:
        os.fchmod(fd, 0o600)  # the umask may have taken bits from 0o600
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name, dir_fd=directory)
        raise
    return fd


def _write_all(fd: int, content: bytes) -> None:
    view = memoryview(content)
    while view:
        view = view[os.write(fd, view):]


def _list(directory: int) -> list[str]:
    # A fresh open file description: listing through a shared one (threads, forked children)
    # would share its read offset.
    fd = os.open(".", _DIRECTORY, dir_fd=directory)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


def _trusted(status: os.stat_result) -> bool:
    """A regular file of ours with no other name: a hard link planted to someone else's file
    (root's, when we run as root) would otherwise be read, and chmod-ed through."""
    return (stat.S_ISREG(status.st_mode) and status.st_uid == os.geteuid()
            and status.st_nlink == 1)


def _rename_aside(name: str, target: str, directory: int) -> bool:
    try:
        os.rename(name, target, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError:
        return False
    return True


def _read_bounded(fd: int, limit: int) -> bytes:
    """Up to `limit + 1` bytes: one more than a valid file may hold tells it is not one."""
    chunks: list[bytes] = []
    left = limit + 1
    while left > 0:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _encode(body: Body) -> bytes:
    header = orjson.dumps({
        "route": body.route, "encoding": body.encoding, "records": body.records,
        "oldest_ns": body.oldest_ns, "crc32": zlib.crc32(body.data),
    })
    return MAGIC + header + b"\n" + body.data


def _decode(raw: bytes, name: str) -> Body | int:
    """The body, or the number of records lost (the header's count if readable, else 1)."""
    if not raw.startswith(MAGIC):
        return 1
    newline = raw.find(b"\n", len(MAGIC), len(MAGIC) + _MAX_HEADER)
    if newline < 0:
        return 1
    try:
        header = orjson.loads(raw[len(MAGIC):newline])
    except orjson.JSONDecodeError:
        return 1
    if not isinstance(header, dict):
        return 1
    records = header.get("records")
    if (not isinstance(records, int) or isinstance(records, bool)
            or not 1 <= records <= _MAX_RECORDS_PER_BODY):
        return 1
    route, encoding = header.get("route"), header.get("encoding")
    oldest_ns, crc = header.get("oldest_ns"), header.get("crc32")
    data = raw[newline + 1:]
    if (not isinstance(route, str) or encoding not in ("gzip", "identity")
            or not isinstance(oldest_ns, int) or not isinstance(crc, int)
            or zlib.crc32(data) != crc):
        return records
    return Body(route, data, records, cast(Encoding, encoding), oldest_ns, spool_name=name)
