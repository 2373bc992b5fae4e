"""The local spool: request bodies that could not be delivered before a shutdown budget ran
out (or before the process exited) wait on disk for the next client with the same endpoint.

Layout (docs/delivery.md). ``<spool_dir>/<key>/`` holds one endpoint's files, ``key`` being
the first 16 hex digits of the SHA-256 of the endpoint URL (the URL itself is in
``<key>/ENDPOINT``, for people):

- ``<ns>-<pid>-<rand>.spool.tmp``: being written. Never read; removed once its writer is gone.
- ``<ns>-<pid>-<rand>.spool``: complete. The writer wrote the temporary file, flushed and
  fsynced it, then renamed it (an atomic step): a process killed while spooling leaves at
  most a temporary file, never a partial ``.spool``.
- ``<base>.claimed.<pid>.<token>``: being delivered by that process. Claiming is a rename,
  so two clients never deliver the same file. A claim whose process is gone (or untouched for
  `STALE_SECONDS`) is claimed again.
- ``<base>.journal``: the indexes of the file's bodies already delivered, one per line,
  appended after each delivery. A claim picked up again skips them: a body is sent twice
  only if the process died between the server's answer and the journal line.
- ``<base>.bad``: a file that could not be read (reported once, kept for inspection, skipped).

A ``.spool`` file is text: a header line (JSON: format version, endpoint, writer's pid), one
line per body (``<events> <body JSON>``), and a trailer line (JSON: bodies and events). The
trailer proves the file complete.

The whole directory (every endpoint) is bounded by ``max_bytes``: what does not fit is not
written, and the caller counts it as failed. Every disk error is caught and reported through
`Spool.problem`: a spool that cannot be used never stops delivery.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import socket
import time
from typing import Iterator, List, Optional, Set, Tuple

FORMAT = 1
STALE_SECONDS = 600.0
"""A claim or a temporary file untouched this long is taken to be abandoned."""


def default_dir() -> str:
    """``$XDG_CACHE_HOME/raceway/spool``, else ``~/.cache/raceway/spool`` (beside the compiled
    core's cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "raceway", "spool")


def endpoint_key(endpoint: str) -> str:
    return hashlib.sha256(endpoint.encode("utf-8")).hexdigest()[:16]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


class SpoolError(Exception):
    pass


class Spool:
    def __init__(self, directory: str, endpoint: str, max_bytes: int):
        self.root = directory
        self.endpoint = endpoint
        self.max_bytes = max_bytes
        self.path = os.path.join(directory, endpoint_key(endpoint))
        self.problem: Optional[str] = None
        """The last disk error, for the caller to report (it is reported once)."""
        self.bad: List[str] = []
        """Files found unreadable in this process (each reported once)."""
        self._token = secrets.token_hex(4)

    # -- writing ----------------------------------------------------------------------------------
    def writer(self) -> "Writer":
        """A new spool file, written in full before it becomes visible. Raises `SpoolError`."""
        try:
            os.makedirs(self.path, mode=0o700, exist_ok=True)
            marker = os.path.join(self.path, "ENDPOINT")
            if not os.path.exists(marker):
                with open(marker, "w", encoding="utf-8") as f:
                    f.write(self.endpoint + "\n")
            used = self.used_bytes()
        except OSError as e:
            raise SpoolError(f"cannot use the spool directory {self.path}: {e}") from None
        return Writer(self, used)

    def used_bytes(self) -> int:
        """Bytes of every file under the spool directory (all endpoints)."""
        total = 0
        try:
            tops = list(os.scandir(self.root))
        except FileNotFoundError:
            return 0
        for top in tops:
            try:
                if top.is_dir(follow_symlinks=False):
                    for entry in os.scandir(top.path):
                        try:
                            if entry.is_file(follow_symlinks=False):
                                total += entry.stat(follow_symlinks=False).st_size
                        except OSError:
                            pass
                elif top.is_file(follow_symlinks=False):
                    total += top.stat(follow_symlinks=False).st_size
            except OSError:
                pass
        return total

    # -- reading ----------------------------------------------------------------------------------
    def claim_next(self) -> Optional["Claim"]:
        """Claims the oldest complete file (or an abandoned claim) and returns it, checked
        readable; None when there is nothing to send. Unreadable files are set aside
        (``.bad``) and listed in `bad`; disk errors end the scan with `problem` set."""
        try:
            names = sorted(os.listdir(self.path))
        except FileNotFoundError:
            return None
        except OSError as e:
            self.problem = f"cannot read the spool directory {self.path}: {e}"
            return None
        present = set(names)
        bases: Set[str] = set()
        for name in names:
            full = os.path.join(self.path, name)
            if name.endswith(".spool.tmp"):
                self._sweep_tmp(full, name)
                continue
            if name.endswith(".spool"):
                base = name[: -len(".spool")]
                bases.add(base)
                claim = self._claim(full, base)
            elif ".claimed." in name:
                base = name.split(".claimed.", 1)[0]
                bases.add(base)
                if not self._abandoned(full, name):
                    continue
                claim = self._claim(full, base)
            else:
                continue
            if claim is not None:
                return claim
        for name in names:  # journals whose file was delivered (the process died in between)
            base = name[: -len(".journal")]
            if name.endswith(".journal") and base not in bases and base + ".bad" not in present:
                _remove(os.path.join(self.path, name))
        return None

    def _claim(self, full: str, base: str) -> Optional["Claim"]:
        claimed = os.path.join(self.path, f"{base}.claimed.{os.getpid()}.{self._token}")
        try:
            os.rename(full, claimed)
        except FileNotFoundError:  # another client claimed it first
            return None
        except OSError as e:
            self.problem = f"cannot claim the spool file {full}: {e}"
            return None
        claim = Claim(self, claimed, base)
        try:
            claim.check()
        except (OSError, ValueError, SpoolError) as e:
            bad = os.path.join(self.path, base + ".bad")
            try:
                os.rename(claimed, bad)
            except OSError:
                pass
            self.bad.append(f"{bad} ({e})")
            return None
        try:
            os.utime(claimed)
        except OSError:
            pass
        return claim

    def _abandoned(self, full: str, name: str) -> bool:
        try:
            pid = int(name.split(".claimed.", 1)[1].split(".")[0])
        except (ValueError, IndexError):
            pid = -1
        if pid == os.getpid():
            return False  # another client of this process is delivering it
        try:
            age = time.time() - os.stat(full).st_mtime
        except OSError:
            return False
        return (pid > 0 and not _alive(pid)) or age > STALE_SECONDS

    def _sweep_tmp(self, full: str, name: str) -> None:
        try:
            pid = int(name.split("-")[1])
        except (ValueError, IndexError):
            pid = -1
        try:
            age = time.time() - os.stat(full).st_mtime
        except OSError:
            return
        if pid != os.getpid() and ((pid > 0 and not _alive(pid)) or age > STALE_SECONDS):
            _remove(full)


class Writer:
    """One new spool file. `add` bodies, then `commit` (or `abort`)."""

    def __init__(self, spool: Spool, used: int):
        self.spool = spool
        self.used = used
        base = f"{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(3)}"
        self.final = os.path.join(spool.path, base + ".spool")
        self.tmp = self.final + ".tmp"
        self.bodies = 0
        self.events = 0
        self.written = 0
        self._file = None
        try:
            fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            self._file = os.fdopen(fd, "wb")
            header = {
                "raceway_spool": FORMAT,
                "endpoint": spool.endpoint,
                "pid": os.getpid(),
                "host": socket.gethostname(),
            }
            self._write(json.dumps(header).encode() + b"\n")
        except OSError as e:
            self.abort()
            raise SpoolError(f"cannot write the spool file {self.tmp}: {e}") from None

    def _write(self, data: bytes) -> None:
        self._file.write(data)  # type: ignore[union-attr]
        self.written += len(data)

    def fits(self, size: int) -> bool:
        return self.used + self.written + size + 64 <= self.spool.max_bytes

    def add(self, body: "bytes | str", events: int) -> bool:
        """Appends a body; False when the spool has no room for it (nothing written)."""
        data = body if isinstance(body, bytes) else body.encode("utf-8")
        line = b"%d " % events + data.replace(b"\n", b" ") + b"\n"
        if not self.fits(len(line)):
            return False
        try:
            self._write(line)
        except OSError as e:
            raise SpoolError(f"cannot write the spool file {self.tmp}: {e}") from None
        self.bodies += 1
        self.events += events
        return True

    def commit(self) -> Optional[str]:
        """Completes the file and makes it visible (atomically); None when it was empty."""
        if self._file is None:
            return None
        if not self.bodies:
            self.abort()
            return None
        try:
            self._write(json.dumps({"end": self.bodies, "events": self.events}).encode() + b"\n")
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.rename(self.tmp, self.final)
            _fsync_dir(self.spool.path)
        except OSError as e:
            self.abort()
            raise SpoolError(f"cannot complete the spool file {self.final}: {e}") from None
        return self.final

    def abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        _remove(self.tmp)


class Claim:
    """A spool file this process delivers, body by body, journaling each delivered one."""

    def __init__(self, spool: Spool, path: str, base: str):
        self.spool = spool
        self.path = path
        self.base = base
        self.journal_path = os.path.join(spool.path, base + ".journal")
        self.done: Set[int] = set()
        self.bodies = 0
        self.events = 0
        self._journal: Optional[io.BufferedWriter] = None
        self._last_touch = 0.0

    def check(self) -> None:
        """Reads the whole file once: header, body lines, trailer. Raises when unreadable."""
        with open(self.path, "rb") as f:
            header = json.loads(f.readline() or b"null")
            if not isinstance(header, dict) or header.get("raceway_spool") != FORMAT:
                raise SpoolError("not a raceway spool file of a known format")
            if header.get("endpoint") != self.spool.endpoint:
                raise SpoolError(f"written for another endpoint ({header.get('endpoint')!r})")
            bodies = events = 0
            trailer = None
            for line in f:
                if trailer is not None:
                    raise SpoolError("data after the trailer")
                if line.startswith(b"{"):
                    trailer = json.loads(line)
                    continue
                n, _, body = line.partition(b" ")
                if not n.isdigit() or not body.startswith(b"{") or not line.endswith(b"\n"):
                    raise SpoolError(f"body {bodies + 1} is malformed")
                bodies += 1
                events += int(n)
            if not isinstance(trailer, dict) or trailer.get("end") != bodies or trailer.get("events") != events:
                raise SpoolError("truncated (no valid trailer)")
        self.bodies, self.events = bodies, events
        try:
            with open(self.journal_path, "rb") as j:
                for line in j:
                    if line.strip().isdigit():
                        self.done.add(int(line))
        except FileNotFoundError:
            pass

    def items(self) -> Iterator[Tuple[int, int, bytes]]:
        """``(index, events, body)`` of each body not yet delivered, in order."""
        with open(self.path, "rb") as f:
            f.readline()
            index = 0
            for line in f:
                if line.startswith(b"{"):
                    return
                if index not in self.done:
                    n, _, body = line.partition(b" ")
                    yield index, int(n), body.rstrip(b"\n")
                index += 1

    def mark_done(self, index: int) -> None:
        """Journals a delivered (or refused) body."""
        self.done.add(index)
        journal = self._journal
        if journal is None:
            journal = self._journal = open(self.journal_path, "ab")
        journal.write(b"%d\n" % index)
        journal.flush()
        self.touch()

    def touch(self) -> None:
        now = time.monotonic()
        if now - self._last_touch > 5.0:
            self._last_touch = now
            try:
                os.utime(self.path)
            except OSError:
                pass

    @property
    def finished(self) -> bool:
        return len(self.done) >= self.bodies

    def finish(self) -> None:
        """Every body delivered: the file goes, then its journal."""
        self._close()
        _remove(self.path)
        _remove(self.journal_path)

    def release(self) -> None:
        """Gives the file back (for the next client); its journal stays with it."""
        self._close()
        if self.finished:
            self.finish()
            return
        try:
            os.rename(self.path, os.path.join(self.spool.path, self.base + ".spool"))
        except OSError:
            pass  # left claimed: picked up again once this process is gone

    def _close(self) -> None:
        if self._journal is not None:
            try:
                self._journal.close()
            except OSError:
                pass
            self._journal = None


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
