"""Dynatrace's enrichment files → resource attributes that link records to their entities.

Data sent to the ingest APIs is tied to a host, process or pod only when it carries Dynatrace's
entity attributes (https://docs.dynatrace.com/docs/shortlink/enrichment-files). Dynatrace writes
them into files; this module reads them, once per process:

| level     | file (JSON first; `.properties` when the JSON is absent or unusable) | by       |
|-----------|-----------------------------------------------------------------------|----------|
| `process` | `dt_metadata_e617c525669e072eebe3d0f08212e8f2.json`, opened relative  | OneAgent |
|           | to the working directory; it holds the path of the attributes file    |          |
| `pod`     | `<directory>/dt_metadata.json`                                        | Operator |
| `host`    | `<directory>/dt_host_metadata.json`                                   | OneAgent |

`<directory>` is `/var/lib/dynatrace/enrichment`, on Windows
`%ProgramData%\\dynatrace\\enrichment`.

Precedence: the most specific file wins a clash, process > pod > host. Each file is written by the
component closest to what it describes (OneAgent for this very process, the Operator for this
pod, OneAgent for the machine), so where two disagree the narrower one is the one that knows;
it is also the OpenTelemetry rule that a more specific detector's value wins. (Dynatrace's page
states no precedence; on a healthy host the files do not overlap.)

Formats: JSON must be one object; `null` values are left out, strings, booleans, ints within
int64 and finite floats are kept, anything else becomes its compact JSON text. `.properties`
files are read as `java.util.Properties.load` reads them: `key=value`, `key:value` or
`key value`; `#` and `!` comment lines; backslash escapes (`\\t \\n \\r \\f \\uXXXX`, any other
character stands for itself); a line ending in an odd number of backslashes continues on the
next. Files are UTF-8 (ISO-8859-1, Java's default for properties, when not valid UTF-8).

Failures: a missing file is normal and silent. A file that cannot be read, is larger than
`MAX_FILE_BYTES`, or does not parse is one warning (logger `dt_exporter.enrichment`, naming the
file and the reason, never its content) and is skipped; nothing here raises.

Caching and fork: the first call reads the files; later calls in the same process return the same
`Enrichment` object (same identity, so callers can cache on it). After `os.fork()` the first call
in the child compares each file's (inode, size, mtime) and the path the process file names with
what the parent read; only if something differs are the files read again.

`DT_EXPORTER_ENRICHMENT=false` (read by `config.enrichment_enabled`) turns all of it off: every
reader built with `enabled=None` then returns the empty `Enrichment`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import ntpath
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal

from opentelemetry.sdk.resources import Resource, ResourceDetector
from opentelemetry.util.types import AttributeValue

from dt_exporter import config
from dt_exporter.errors import ConfigError

Level = Literal["process", "pod", "host"]
Attributes = Mapping[str, AttributeValue]

#: The name OneAgent serves inside every process it monitors (documented; not a real file).
PROCESS_FILE: Final = "dt_metadata_e617c525669e072eebe3d0f08212e8f2"
POD_FILE: Final = "dt_metadata"
HOST_FILE: Final = "dt_host_metadata"
UNIX_DIRECTORY: Final = "/var/lib/dynatrace/enrichment"
#: Real enrichment files hold a few dozen attributes; anything this large is not one.
MAX_FILE_BYTES: Final = 1 << 20
#: The process file holds one path.
_MAX_PATH_BYTES: Final = 4096
_INT64: Final = 1 << 63
_EMPTY: Final[Attributes] = MappingProxyType({})

_log = logging.getLogger("dt_exporter.enrichment")


@dataclass(frozen=True, slots=True)
class Source:
    """One file that supplied attributes."""

    level: Level
    #: The file the attributes were read from (for `process`, the file the indirection named).
    path: str
    #: For `process`: the indirection file that named `path`; else None.
    via: str | None
    attributes: Attributes


@dataclass(frozen=True, slots=True)
class Enrichment:
    """What was found: merged attributes (most specific first) and where each came from."""

    attributes: Attributes
    #: The files read, most specific first.
    sources: tuple[Source, ...] = ()
    #: One line per file skipped with a warning (the same text as the warning).
    problems: tuple[str, ...] = ()
    enabled: bool = True

    def origin(self, key: str) -> Source | None:
        """The file whose value of `key` is in `attributes` (the most specific holding it)."""
        return next((s for s in self.sources if key in s.attributes), None)


_DISABLED: Final = Enrichment(_EMPTY, enabled=False)


def default_directory(
    platform: str = os.name, env: Mapping[str, str] | None = None
) -> str | None:
    """The enrichment directory: `/var/lib/dynatrace/enrichment`, on Windows
    `%ProgramData%\\dynatrace\\enrichment` (None when ProgramData is unset)."""
    if platform == "nt":
        program_data = config.windows_program_data(env)
        return ntpath.join(program_data, "dynatrace", "enrichment") if program_data else None
    return UNIX_DIRECTORY


# -- parsing (pure) -------------------------------------------------------------------------------


class MalformedFileError(ValueError):
    """The file's text is not a valid enrichment file; the message says why (no content)."""


def parse_json(text: str) -> dict[str, AttributeValue]:
    """One JSON object → attributes (see the module docstring for value rules)."""
    try:
        data = json.loads(text)
    except ValueError as e:
        raise MalformedFileError(f"not JSON ({type(e).__name__} at line {_json_line(e)})") from None
    except RecursionError:
        raise MalformedFileError("not JSON (nested too deep)") from None
    if not isinstance(data, dict):
        raise MalformedFileError(f"expected a JSON object, found {type(data).__name__}")
    out: dict[str, AttributeValue] = {}
    for key, value in data.items():
        converted = _json_value(value)
        if key and converted is not None:
            out[key] = converted
    return out


def _json_line(error: ValueError) -> object:
    return getattr(error, "lineno", "?")


def _json_value(value: object) -> AttributeValue | None:
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


_WHITESPACE: Final = " \t\f"
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")
_ESCAPES: Final = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}


def parse_properties(text: str) -> dict[str, str]:
    """Java `.properties` text → attributes, as `java.util.Properties.load` (Java 9+) reads it
    (`_logical_lines` follows its line reader step by step, quirks included)."""
    out: dict[str, str] = {}
    for number, line in _logical_lines(text):
        key, value = _split_pair(line, number)
        out[key] = value
    return out


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """The logical lines (still escaped) with the number of the natural line each ends on.

    A port of `Properties.LineReader.readLine`: leading whitespace is skipped; a line whose
    first character is `#` or `!` is a comment (also after a continuation that left the line
    empty); a break preceded by an odd number of backslashes continues the line, dropping that
    backslash and the next line's leading whitespace; an empty line is skipped, except one that
    the end of the input cuts short right after a continuation, which Java returns (empty key).
    """
    if "\\" not in text:  # no continuation, no escape: line by line gives the same lines
        return [(number, line) for number, line in enumerate(
            (line.lstrip(_WHITESPACE) for line in _LINE_BREAK.split(text)), 1)
            if line and line[0] not in "#!"]
    lines: list[tuple[int, str]] = []
    buf: list[str] = []
    number = 1
    skip_white, appended, backslash, skip_lf = True, False, False, False
    i, n = 0, len(text)
    while True:
        if i >= n:  # end of input
            if buf:
                lines.append((number, "".join(buf[:-1] if backslash else buf)))
            return lines
        c = text[i]
        i += 1
        if skip_lf:
            skip_lf = False
            if c == "\n":
                continue
        if skip_white:
            if c in _WHITESPACE or (not appended and c in "\r\n"):
                if c == "\n" or (c == "\r" and text[i : i + 1] != "\n"):
                    number += 1
                continue
            skip_white = appended = False
        if not buf and c in "#!":  # a comment: up to the next line break
            while i < n and text[i] not in "\r\n":
                i += 1
            skip_white = True
            continue
        if c not in "\r\n":
            buf.append(c)
            backslash = (not backslash) if c == "\\" else False
            continue
        # a line break
        if c == "\r" and text[i : i + 1] == "\n":
            skip_lf = True
        end_number = number
        number += 1
        if not buf:
            skip_white = True
            continue
        if i >= n:  # the input ends right at this break
            lines.append((end_number, "".join(buf[:-1] if backslash else buf)))
            return lines
        if backslash:
            buf.pop()
            skip_white = appended = True
            backslash = False
        else:
            lines.append((end_number, "".join(buf)))
            buf = []
            skip_white = True


def _split_pair(line: str, number: int) -> tuple[str, str]:
    end = 0
    while end < len(line):
        c = line[end]
        if c == "\\":
            end += 2
            continue
        if c in "=:" or c in _WHITESPACE:
            break
        end += 1
    key = line[:end]
    rest = line[end:].lstrip(_WHITESPACE)
    if rest[:1] in ("=", ":"):
        rest = rest[1:].lstrip(_WHITESPACE)
    return _unescape(key, number), _unescape(rest, number)


def _unescape(text: str, number: int) -> str:
    if "\\" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "u":
            digits = text[i + 2 : i + 6]
            if len(digits) != 4 or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise MalformedFileError(f"malformed \\uXXXX escape (line {number})")
            out.append(chr(int(digits, 16)))
            i += 6
            continue
        out.append(_ESCAPES.get(nxt, nxt))
        i += 2
    joined = "".join(out)
    # \uD83D\uDE00 is one character in Java (UTF-16); join surrogate pairs, mark lone halves.
    return joined.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


# -- reading files ----------------------------------------------------------------------------


class _SkippedError(Exception):
    """A file present but unusable; the message is the warning."""


def _read_text(path: str, limit: int) -> str | None:
    """The file's text; None when it does not exist; `_SkippedError` when unusable."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as e:
        reason = f"{type(e).__name__}: {e.strerror or 'error'}"
        raise _SkippedError(f"cannot be read ({reason})") from None
    if len(data) > limit:
        raise _SkippedError(f"larger than {limit} bytes")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("latin-1")


_PARSERS: Final[dict[str, Callable[[str], Mapping[str, AttributeValue]]]] = {
    ".json": parse_json,
    ".properties": parse_properties,
}


def _load(path: str, suffix: str) -> Mapping[str, AttributeValue] | None:
    """The attributes of the file at `path`, parsed as `suffix` says; None when it is absent."""
    text = _read_text(path, MAX_FILE_BYTES)
    if text is None:
        return None
    try:
        return _PARSERS[suffix](text)
    except MalformedFileError as e:
        raise _SkippedError(str(e)) from None


def _process_target(indirection: str, workdir: str | None) -> str | None:
    """The path the process file names; None when there is no process file."""
    text = _read_text(indirection, _MAX_PATH_BYTES)
    if text is None:
        return None
    target = text.strip()
    if not target or "\n" in target or "\x00" in target:
        raise _SkippedError("does not hold one file path")
    if workdir is not None and not os.path.isabs(target):
        target = os.path.join(workdir, target)
    return target


class _Collector:
    def __init__(self) -> None:
        self.sources: list[Source] = []
        self.problems: list[str] = []

    def warn(self, path: str, reason: str) -> None:
        message = f"Dynatrace enrichment file {path} skipped: {reason}"
        self.problems.append(message)
        _log.warning("%s", message)


def _read_level(level: Level, stem: str, collect: _Collector, workdir: str | None) -> None:
    """Read `stem`.json, else `stem`.properties (for `process`: the file each one names, in
    the naming file's format). The first usable one is the level's source."""
    for suffix in (".json", ".properties"):
        path = stem + suffix
        target, via = path, None
        try:
            if level == "process":
                named = _process_target(path, workdir)
                if named is None:
                    continue
                target, via = named, path
                try:
                    attributes = _load(named, suffix)
                except _SkippedError as e:
                    raise _SkippedError(f"names {named}, which is unusable: {e}") from None
                if attributes is None:
                    raise _SkippedError(f"names {named}, which does not exist")
            else:
                attributes = _load(path, suffix)
                if attributes is None:
                    continue
        except _SkippedError as e:
            collect.warn(path, str(e))
            continue
        collect.sources.append(Source(level, target, via, MappingProxyType(dict(attributes))))
        return


def read_files(directory: str | None, workdir: str | None = None) -> Enrichment:
    """Read the three levels now (no cache). `directory` None: no pod or host files;
    `workdir` None: the process file is opened relative to the current working directory."""
    collect = _Collector()
    _read_level("process", _in(workdir, PROCESS_FILE), collect, workdir)
    if directory is not None:
        _read_level("pod", os.path.join(directory, POD_FILE), collect, workdir)
        _read_level("host", os.path.join(directory, HOST_FILE), collect, workdir)
    merged: dict[str, AttributeValue] = {}
    for source in collect.sources:  # most specific first: setdefault keeps its value
        for key, value in source.attributes.items():
            merged.setdefault(key, value)
    return Enrichment(
        MappingProxyType(merged) if merged else _EMPTY,
        tuple(collect.sources),
        tuple(collect.problems),
    )


def _in(workdir: str | None, name: str) -> str:
    return name if workdir is None else os.path.join(workdir, name)


# -- the per-process cache ------------------------------------------------------------------------

_Stamp = tuple[int, int, int] | None
_Fingerprint = tuple[object, ...]


def _stamp(path: str) -> _Stamp:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class _State:
    pid: int
    fingerprint: _Fingerprint
    enrichment: Enrichment


class EnrichmentReader:
    """Reads the enrichment files once per process; see the module docstring.

    `directory`: the enrichment directory (default: `default_directory()`); `workdir`: where
    the process file is looked up (default: the working directory at the time of reading);
    `enabled`: None reads `DT_EXPORTER_ENRICHMENT`; `getpid` is injectable for tests.
    Safe to call from any thread (a race reads the files twice, never wrongly); never raises.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
        *,
        enabled: bool | None = None,
        getpid: Callable[[], int] = os.getpid,
    ) -> None:
        self._directory = os.fspath(directory) if directory is not None else None
        self._default_directory = directory is None
        self._workdir = os.fspath(workdir) if workdir is not None else None
        self._enabled = enabled
        self._getpid = getpid
        self._state: _State | None = None
        #: How many times the files were actually read (for tests and `check`).
        self.reads = 0

    def read(self) -> Enrichment:
        """The enrichment of this process (cached; re-checked after a fork)."""
        try:
            return self._current()
        except Exception:  # never into the application; a bug here must not break logging
            _log.warning("Dynatrace enrichment files could not be read", exc_info=True)
            empty = Enrichment(_EMPTY, problems=("the enrichment files could not be read",))
            with contextlib.suppress(Exception):  # said once per process
                self._state = _State(self._getpid(), ("failed",), empty)
            return empty

    def attributes(self) -> Attributes:
        """`read().attributes`: the same mapping object until the files change."""
        return self.read().attributes

    def _current(self) -> Enrichment:
        state = self._state
        pid = self._getpid()
        if state is not None and state.pid == pid:
            return state.enrichment
        if not self._is_enabled():
            self._state = _State(pid, (), _DISABLED)
            return _DISABLED
        directory = self._resolve_directory()
        fingerprint = self._fingerprint(directory)
        if state is not None and state.fingerprint == fingerprint:  # forked, nothing changed
            self._state = _State(pid, fingerprint, state.enrichment)
            return state.enrichment
        self.reads += 1
        enrichment = read_files(directory, self._workdir)
        self._state = _State(pid, fingerprint, enrichment)
        return enrichment

    def _is_enabled(self) -> bool:
        if self._enabled is None:
            try:
                self._enabled = config.enrichment_enabled()
            except ConfigError as e:
                _log.warning("%s; enrichment stays on", e)
                self._enabled = True
        return self._enabled

    def _resolve_directory(self) -> str | None:
        if self._default_directory:
            return default_directory()
        return self._directory

    def _fingerprint(self, directory: str | None) -> _Fingerprint:
        """What identifies the files' state: each file's stamp and the process file's target."""
        parts: list[object] = [directory]
        for suffix in (".json", ".properties"):
            indirection = _in(self._workdir, PROCESS_FILE + suffix)
            try:
                target = _process_target(indirection, self._workdir)
            except _SkippedError:
                target = "?"
            parts += (_stamp(indirection), target, _stamp(target) if target else None)
        if directory is not None:
            for name in (POD_FILE, HOST_FILE):
                for suffix in (".json", ".properties"):
                    parts.append(_stamp(os.path.join(directory, name + suffix)))
        return tuple(parts)


_default: EnrichmentReader | None = None


def default_reader() -> EnrichmentReader:
    """The process-wide reader of the default paths, shared by the exporter, the events
    clients, `setup_dynatrace()` and the resource detector."""
    global _default
    reader = _default
    if reader is None:
        reader = _default = EnrichmentReader()
    return reader


def attributes() -> Attributes:
    """The enrichment attributes of this process from the default paths (cached, cheap:
    one `os.getpid()` after the first call). Empty when off or when no file exists."""
    return default_reader().attributes()


def under(resource: Resource, enrichment: Attributes) -> Resource:
    """`resource` with `enrichment` merged under it: the resource's own values win a clash."""
    extra = {k: v for k, v in enrichment.items() if k not in resource.attributes}
    if not extra:
        return resource
    return Resource({**resource.attributes, **extra}, resource.schema_url)


class DynatraceResourceDetector(ResourceDetector):
    """OpenTelemetry resource detector for Dynatrace's enrichment files.

    Registered as entry point `dynatrace` in group `opentelemetry_resource_detector`, so
    `OTEL_EXPERIMENTAL_RESOURCE_DETECTORS=dynatrace` adds it to `Resource.create()`. Without
    arguments it shares the process-wide cache of the default paths; `directory` / `workdir`
    (see `EnrichmentReader`) give it a reader of its own. Process dependent: the SDK runs it
    again in a forked child, where it re-reads only files that changed.
    """

    def __init__(
        self,
        raise_on_error: bool = False,
        *,
        directory: str | os.PathLike[str] | None = None,
        workdir: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(raise_on_error)
        self._reader = (
            EnrichmentReader(directory, workdir)
            if directory is not None or workdir is not None
            else None
        )

    def detect(self) -> Resource:
        reader = self._reader or default_reader()
        return Resource(dict(reader.attributes()))

    def is_process_dependent(self) -> bool:
        return True


def attributes_or_none(*, strict: bool) -> Attributes | None:
    """Dynatrace's enrichment attributes of this host/pod/process (none when the files are
    absent or `DT_EXPORTER_ENRICHMENT=false`). A bad switch raises only when set by hand."""
    try:
        if not config.enrichment_enabled():
            return None
    except ConfigError as exc:
        if strict:
            raise
        _log.error("dt_exporter: enrichment disabled: %s", exc)
        return None
    return attributes() or None
