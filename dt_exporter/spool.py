"""The disk spool: request bodies that outlive the process.

Each queued body is also one file, written before `export()` returns and removed once Dynatrace
took it (or it was dropped for good). After a crash or `kill -9`, the next process using the same
directory delivers what is left: at least once, so what it recovers is counted as
`possible_duplicates`. Only bodies are written: never the token, never headers.

Several processes may share a directory. Each process owns the files named after its owner id and
holds an exclusive `flock` on `<owner>.lock` while it lives; a process that can take a dead
owner's lock claims its files by renaming them (atomic: exactly one claimant wins).

File layout: 4-byte magic `DTB1`, a JSON header line (route, encoding, records, oldest_ns,
crc32 of the data), then the data. A torn or corrupt file is moved aside as `*.corrupt` and
counted (`spool_corrupt`), never raised.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import secrets
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final, cast

import orjson

from dt_exporter.payload import Body, Encoding

MAGIC: Final = b"DTB1"
SUFFIX: Final = ".body"


@dataclass(frozen=True, slots=True)
class Recovered:
    bodies: list[Body]
    corrupt_files: int


class Spool:
    """One process's view of a spool directory."""

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.directory.mkdir(parents=True, exist_ok=True)
        self._open_owner()

    def _open_owner(self) -> None:
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._sequence = itertools.count()
        lock_path = self.directory / f"{self.owner}.lock"
        self._lock_fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def after_fork_in_child(self) -> None:
        """The child gets its own owner id; the parent keeps its files and its lock."""
        os.close(self._lock_fd)
        self._open_owner()

    # -- writing and removing ------------------------------------------------------------------

    def write(self, body: Body) -> Body:
        """Persist `body` and return it tagged with its file name."""
        name = f"{self.owner}-{next(self._sequence):012d}{SUFFIX}"
        header = orjson.dumps({
            "route": body.route, "encoding": body.encoding, "records": body.records,
            "oldest_ns": body.oldest_ns, "crc32": zlib.crc32(body.data),
        })
        temporary = self.directory / f".{name}.tmp"
        with open(temporary, "wb") as handle:
            handle.write(MAGIC + header + b"\n" + body.data)
        os.replace(temporary, self.directory / name)
        return replace(body, spool_name=name)

    def remove(self, body: Body) -> None:
        if body.spool_name:
            (self.directory / body.spool_name).unlink(missing_ok=True)

    def size(self) -> int:
        return sum(entry.stat().st_size for entry in self._files(self.owner))

    # -- recovery ------------------------------------------------------------------------------

    def recover(self) -> Recovered:
        """Claim the files of every dead owner (and our own leftovers); read them back."""
        for lock_path in self.directory.glob("*.lock"):
            owner = lock_path.name[: -len(".lock")]
            if owner != self.owner and self._is_dead(lock_path):
                for entry in self._files(owner):
                    claimed = f"{self.owner}-{next(self._sequence):012d}{SUFFIX}"
                    try:
                        os.rename(entry, self.directory / claimed)
                    except FileNotFoundError:  # another process claimed it first
                        continue
                lock_path.unlink(missing_ok=True)
        bodies: list[Body] = []
        corrupt = 0
        for entry in sorted(self._files(self.owner)):
            body = _read(entry)
            if body is None:
                corrupt += 1
                os.replace(entry, entry.with_name(entry.name + ".corrupt"))
            else:
                bodies.append(body)
        return Recovered(bodies, corrupt)

    def _files(self, owner: str) -> Iterator[Path]:
        return self.directory.glob(f"{owner}-*{SUFFIX}")

    @staticmethod
    def _is_dead(lock_path: Path) -> bool:
        try:
            fd = os.open(lock_path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True


def _read(path: Path) -> Body | None:
    try:
        raw = path.read_bytes()
        newline = raw.index(b"\n")
        if not raw.startswith(MAGIC):
            return None
        header = orjson.loads(raw[len(MAGIC):newline])
        data = raw[newline + 1:]
        if zlib.crc32(data) != header["crc32"] or header["encoding"] not in ("gzip", "identity"):
            return None
        return Body(str(header["route"]), data, int(header["records"]),
                    cast(Encoding, header["encoding"]), int(header["oldest_ns"]),
                    spool_name=path.name)
    except (OSError, ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        return None
