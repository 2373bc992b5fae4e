"""The records file (``Config(events_file=PATH)``): every batch the core sees, one JSON line each,
so ``python -m raceway analyze`` can look for races later, across processes and services.

A line is the batch exactly as the host hands it to the core, with two members put in front
(docs/cli.md has the format)::

    {"raceway":"records/1","process":{...},"contexts":[...],"states":[...],"events":[...]}

The line is made by splicing strings: the batch's JSON (up to a few MB) is never parsed again.

Crash safety: each line goes to the file in one ``write`` on a descriptor opened with
``O_APPEND`` and no user-space buffer, so a process killed at any moment leaves at worst its
last line cut short, and the next writer (this process after a failed write, or a new process
appending to the file) starts on a fresh line. Nothing is ``fsync``-ed: the data survives the
process, not a power cut.

Rotation: when a line would take the file past ``max_bytes``, the file becomes ``PATH.1``,
``PATH.1`` becomes ``PATH.2`` and so on, at most ``backups`` of them (the standard library's
`logging.handlers.RotatingFileHandler` does the renaming). ``backups=0`` starts the file over.
A single line larger than ``max_bytes`` is still written, alone in its file.

Failures (a full disk, a missing directory, no permission) never reach the caller: the first is
logged at ERROR on the ``raceway`` logger, the batches are counted in `failed_batches`, and each
later batch tries again (a freed disk resumes the file by itself).
"""

from __future__ import annotations

import io
import json
import logging
import os
import threading
from logging.handlers import RotatingFileHandler
from typing import Any, Dict, Optional

log = logging.getLogger("raceway")

FORMAT = "records/1"
"""The ``"raceway"`` member of every line: the format's name and version."""

_WHITESPACE = " \t\r\n"


class EventsFile:
    """Appends record batches to ``path``, one line per batch, rotating by size.

    :param path: the file; ``{pid}`` in it is replaced by the process id (one file per
        process, e.g. for forked web workers that would otherwise share and rotate one file).
    :param max_bytes: size at which the file is rotated, in bytes (about: a line is never
        split).
    :param backups: how many rotated files (``PATH.1`` ... ``PATH.N``) are kept.

    Thread-safe. Never raises from `write` or `close`.
    """

    def __init__(self, path: "os.PathLike[str] | str", max_bytes: int = 64 * 1024 * 1024, backups: int = 3):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive int, got {max_bytes!r}")
        if isinstance(backups, bool) or not isinstance(backups, int) or backups < 0:
            raise ValueError(f"backups must be a non-negative int, got {backups!r}")
        self._template = os.fspath(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._lock = threading.Lock()
        self._file: Optional[io.FileIO] = None  # unbuffered, opened lazily
        self._pid = -1
        self._rotation: Optional[RotatingFileHandler] = None
        self._fresh_line = False  # the file may end in a torn line: start with a newline
        self._closed = False
        self._failure_logged = False
        self.written_batches = 0
        """Lines written."""
        self.failed_batches = 0
        """Batches that could not be written (logged once)."""

    @property
    def path(self) -> str:
        """The file written now (absolute; ``{pid}`` replaced)."""
        return _resolve(self._template)

    def write(self, process: Dict[str, Any], records_json: str) -> None:
        """Appends one line: ``{"raceway":"records/1","process":PROCESS,`` + the members of
        ``records_json`` (one JSON object, as handed to the core). Never raises."""
        try:
            data = _line(process, records_json)
        except Exception as e:  # deliberate: a bad batch or process must not reach the flusher
            self._failed(f"the batch could not be written as a line ({type(e).__name__}: {e})")
            return
        with self._lock:
            if self._closed:
                return
            try:
                self._write_locked(data)
            except Exception as e:  # deliberate: disk full, permissions, a vanished directory...
                self._drop_file()
                self._fresh_line = True
                self._failed(f"{type(e).__name__}: {e}")
            else:
                self.written_batches += 1

    def close(self) -> None:
        """Closes the file; later writes are ignored. Safe to call more than once."""
        with self._lock:
            self._closed = True
            self._drop_file()
            if self._rotation is not None:
                self._rotation.close()
                self._rotation = None

    # ------------------------------------------------------------------------------------------
    def _write_locked(self, data: bytes) -> None:
        f = self._file
        if f is None or self._pid != os.getpid():
            f = self._open()
        size = os.fstat(f.fileno()).st_size
        if size > 0 and size + len(data) > self.max_bytes:
            f = self._rollover()
            size = os.fstat(f.fileno()).st_size
        if self._fresh_line and size > 0:
            data = b"\n" + data
        view = memoryview(data)
        while view:  # one write() for a regular file; the loop only for a short write
            n = f.write(view)
            if not n:
                raise OSError("the file accepted no bytes")
            view = view[n:]
        self._fresh_line = False

    def _open(self) -> io.FileIO:
        """Opens the file (after a fork, the child's own), and its rotation; returns it."""
        if self._file is not None and self._pid != os.getpid():
            # A forked child: the descriptor is a copy of the parent's (nothing is buffered).
            self._drop_file()
        path = _resolve(self._template)
        if self._rotation is None or self._rotation.baseFilename != path:
            if self._rotation is not None:
                self._rotation.close()
            # Used for its renaming only (doRollover); it never opens the file (delay=True).
            self._rotation = RotatingFileHandler(path, maxBytes=self.max_bytes, backupCount=self.backups, delay=True)
        f = self._file = open(path, "ab", buffering=0)
        self._pid = os.getpid()
        self._fresh_line = self._fresh_line or not _ends_with_newline(path)
        return f

    def _rollover(self) -> io.FileIO:
        """Moves the full file to the first backup (or empties it without backups) and opens
        a new one; returns it. Runs after `_open`, which made the rotation."""
        rotation = self._rotation
        path = rotation.baseFilename if rotation is not None else _resolve(self._template)
        self._drop_file()
        if self.backups > 0 and rotation is not None:
            rotation.doRollover()
        else:
            with open(path, "wb"):
                pass
        self._fresh_line = False
        f = self._file = open(path, "ab", buffering=0)
        self._pid = os.getpid()
        return f

    def _drop_file(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def _failed(self, reason: str) -> None:
        self.failed_batches += 1
        if not self._failure_logged:
            self._failure_logged = True
            log.error(
                "raceway: a batch could not be written to the records file %s: %s; it is left "
                "out, later writes try again, and later failures are not logged (the "
                "application and delivery carry on)",
                self._template,
                reason,
            )


def _resolve(template: str) -> str:
    return os.path.abspath(template.replace("{pid}", str(os.getpid())))


def _ends_with_newline(path: str) -> bool:
    """True for an empty or missing file or one whose last byte is a newline."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return True
            f.seek(-1, os.SEEK_END)
            return f.read(1) == b"\n"
    except OSError:
        return True


_process_dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode


def _line(process: Dict[str, Any], records_json: str) -> bytes:
    """The line for one batch, newline included, without parsing ``records_json``."""
    start = len(records_json) - len(records_json.lstrip(_WHITESPACE))
    end = len(records_json.rstrip(_WHITESPACE))
    if end - start < 2 or records_json[start] != "{" or records_json[end - 1] != "}":
        raise ValueError("records_json is not a JSON object")
    if records_json.find("\n", start, end) >= 0:
        # Not compact (the SDK's encoder never does this): one object per line needs it re-made.
        records_json = json.dumps(json.loads(records_json), separators=(",", ":"))
        start, end = 0, len(records_json)
    inner = start + 1
    while inner < end and records_json[inner] in _WHITESPACE:
        inner += 1
    head = f'{{"raceway":"{FORMAT}","process":{_process_dumps(process)}'.encode("utf-8")
    if inner == end - 1:  # an empty object: no members to add
        return head + b"}\n"
    body = records_json.encode("utf-8")
    # Whitespace is ASCII, so the character counts around the object are byte counts.
    trailing = len(records_json) - end
    return b"".join((head, b",", memoryview(body)[start + 1 : len(body) - trailing], b"\n"))
