"""Configuration: the reference SDK's `Config`, field for field, plus the settings this SDK adds.

Values are checked when the `Config` is made, so a typo fails loudly at start-up rather than
silently at the first flush.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from typing import Dict, Optional

DEFAULT_ENDPOINT = "http://localhost:8080"


@dataclass
class Config:
    endpoint: Optional[str] = DEFAULT_ENDPOINT
    """Raceway server URL. ``None`` sends nothing over the network (local use).
    ``RACEWAY_ENDPOINT`` replaces the default when set."""
    service_name: str = "unknown-service"
    instance_id: Optional[str] = None
    """Defaults to ``RACEWAY_INSTANCE_ID``, else ``<hostname>-<pid>``."""
    environment: str = field(default_factory=lambda: _environment_default())
    """``ENV`` when set (the reference SDK's default), else ``"development"``."""
    batch_size: int = 50
    """Events that make a request to the server: the sender wakes when this many are waiting,
    and a request carries this many while the sender keeps up. See ``max_batch_size``."""
    flush_interval: float = 1.0
    """Seconds between background flushes."""
    debug: bool = False
    """Log what the SDK does at DEBUG level on the ``raceway`` logger."""
    api_key: Optional[str] = None
    """Sent as ``Authorization: Bearer <key>`` to the Raceway endpoint only.
    Defaults to ``RACEWAY_API_KEY``."""

    # Beyond the reference SDK.
    max_queue_size: int = 100_000
    """Events held in memory at most, recorded and waiting or encoded and not yet delivered
    (~35 MB at the default). When full, the oldest are dropped and counted in
    ``stats()["dropped"]``; the application never waits. See docs/delivery.md."""
    timeout: float = 10.0
    """Seconds one HTTP request to the server may take."""
    max_stack_frames: int = 10
    """Frames kept in the stack trace of an ``Error`` event."""
    strict_context: bool = False
    """When true, tracking calls outside any execution context raise ``RuntimeError``
    instead of being ignored."""
    tags: Dict[str, str] = field(default_factory=lambda: {"sdk_language": "python"})
    # Delivery (docs/delivery.md); after the fields above so positional use is unchanged.
    retries: int = 3
    """Times urllib3 sends a request again after a connection error, a timeout, 429 or 5xx
    before the flusher sets the batch aside and tries again later (it keeps it)."""
    retry_backoff: float = 0.5
    """urllib3's backoff factor: retries wait 0, 2x, 4x this many seconds (plus jitter); after
    that, while the server stays unreachable, attempts are 2x, 4x, 8x... apart."""
    retry_backoff_max: float = 30.0
    """No wait between attempts is longer (a server's ``Retry-After`` included)."""

    # Race detection (docs/races.md).
    detect_races: bool = True
    """Run the race detector in this process on everything recorded, with or without an
    endpoint. Off, the SDK only records and sends."""
    race_stack_frames: int = 1
    """Frames of the caller's stack kept with each ``track_state_change`` for race reports,
    innermost first: 1 (the default) is the access's own frame, ``file:line in function``, at
    ~0.06 µs; each further frame costs ~0.25 µs on the application thread (Python makes the
    caller's frame object) and is carried to the core, so the default keeps ``track_*`` within
    its benchmark target (benchmarks/RESULTS.md, "Race detector"). 0 keeps none. None are taken
    when nothing would read them (``detect_races=False`` and no ``events_file``)."""
    report_races_at_shutdown: bool = True
    """Log the race report (`RacewayClient.race_report`) at WARNING on the ``raceway`` logger
    at ``shutdown()`` when races were found."""
    suppressions: Optional[str] = None
    """Path of a suppressions file (docs/races.md); defaults to ``RACEWAY_SUPPRESSIONS``."""
    events_file: Optional[str] = None
    """Path of a JSON Lines file the recorded batches are also written to (docs/cli.md), for
    ``python -m raceway analyze``. Defaults to ``RACEWAY_EVENTS_FILE``."""
    events_file_max_bytes: int = 64 * 1024 * 1024
    """Size at which the events file is rotated (``PATH.1`` ... ``PATH.N``)."""
    events_file_backups: int = 3
    """Rotated files kept."""

    # Shutdown budget and spool (docs/delivery.md).
    shutdown_timeout: Optional[float] = None
    """Seconds ``shutdown()`` without an argument, and the flush at interpreter exit, may take
    at most. ``None``: ``RACEWAY_SHUTDOWN_TIMEOUT``, else 30 (OpenTelemetry's default)."""
    shutdown_stall: float = 10.0
    """Within that budget, ``shutdown()`` without an argument and the exit flush stop waiting
    once the server has taken nothing for this many seconds (what is left goes to the spool).
    An explicit ``shutdown(timeout)`` waits for its whole timeout."""
    spool: Optional[bool] = None
    """Write what is still undelivered when a shutdown budget ends (or at exit) to the spool,
    and send what an earlier client left there first. ``None``: ``RACEWAY_SPOOL`` (``0``,
    ``false``, ``no``, ``off`` turn it off), else on."""
    spool_dir: Optional[str] = None
    """The spool directory (one subdirectory per endpoint). ``None``: ``RACEWAY_SPOOL_DIR``, else
    ``$XDG_CACHE_HOME/raceway/spool`` or ``~/.cache/raceway/spool``."""
    spool_max_bytes: int = 128 * 1024 * 1024
    """Bytes the spool directory may hold (~190,000 events at ~700 bytes each); what does not
    fit is counted as failed and logged."""

    # Request size under load (docs/delivery.md); last, so positional use is unchanged.
    max_batch_size: int = 500
    """Events one request may carry: while the server keeps up, the sender joins the
    ``batch_size`` bodies that wait (after a burst, or under load it is behind on) into requests
    of up to this many, as OpenTelemetry's batch processor sends up to
    ``max_export_batch_size``. A request costs ~0.2-0.3 ms of CPU whatever its size, so at
    ``batch_size`` 50 requests alone would cap delivery at ~200k events/s of one core. Bodies
    are not joined after a 206 (back-pressure) or a 4xx: docs/delivery.md. Set it to
    ``batch_size`` for requests of exactly ``batch_size``; taken as ``batch_size`` when
    smaller. 500 events are ~340 KB, 5% of the Raceway server's ingest queue."""
    background_nice: int = 0
    """Added to the nice value of the SDK's background threads (the flusher, which encodes and
    detects, and the HTTP sender), on Linux. With 10, when the application and the SDK both
    want a core the application gets ~90% of it, and what the SDK cannot keep up with waits in
    the bounded queue (``max_queue_size``). Off by default: the SDK then also yields to every
    other process, so on a loaded machine delivery lags, and a short ``shutdown()`` budget can
    end before anything was settled (what is left goes to the spool). A thread started on the
    flusher (a logging handler's worker, say) inherits the lower priority for its life. See
    raceway/_priority.py and docs/delivery.md."""

    def __post_init__(self) -> None:
        """Checks every field, so nothing accepted here can fail later (a name the headers
        cannot carry, a number the server refuses). Raises ``ValueError`` naming the field,
        the rule and the value."""
        for name, limit in (("service_name", MAX_NAME), ("environment", MAX_NAME)):
            check_text(getattr(self, name), f"Config.{name}", limit)
        if self.instance_id is not None:
            check_text(self.instance_id, "Config.instance_id", MAX_NAME)
        if self.endpoint is not None:
            check_endpoint(self.endpoint, "Config.endpoint")
        if self.api_key is not None:
            check_api_key(self.api_key, "Config.api_key")
        if not isinstance(self.tags, dict) or len(self.tags) > MAX_TAGS:
            raise ValueError(f"Config.tags must be a dict of at most {MAX_TAGS} entries, got {_show(self.tags)}")
        for key, value in self.tags.items():
            check_text(key, "Config.tags key", MAX_NAME)
            check_text(value, f"Config.tags[{key!r}]", MAX_TAG_VALUE, empty=True)
        _whole(self, "batch_size", 1, MAX_BATCH_SIZE)
        _whole(self, "max_batch_size", 1, MAX_BATCH_SIZE)
        _whole(self, "background_nice", 0, 19)
        _whole(self, "max_queue_size", 1, 10**8)
        _whole(self, "max_stack_frames", 1, 1000)
        _whole(self, "retries", 0, 100)
        _whole(self, "race_stack_frames", 0, 64)
        _whole(self, "events_file_backups", 0, 64)
        _whole(self, "events_file_max_bytes", 1, 2**40)
        _whole(self, "spool_max_bytes", 1, 2**40)
        for name in (
            "flush_interval",
            "timeout",
            "retry_backoff",
            "retry_backoff_max",
            "shutdown_timeout",
            "shutdown_stall",
        ):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):  # 1 means 1.0
                setattr(self, name, float(value))
        _seconds(self, "flush_interval", positive=True)
        _seconds(self, "timeout", positive=True)
        _seconds(self, "retry_backoff", positive=False)
        _seconds(self, "retry_backoff_max", positive=True)
        if self.shutdown_timeout is not None:
            _seconds(self, "shutdown_timeout", positive=True)
        _seconds(self, "shutdown_stall", positive=True)
        if self.spool is not None and not isinstance(self.spool, bool):
            raise ValueError(f"Config.spool must be a bool or None, got {_show(self.spool)}")
        for name in ("debug", "strict_context", "detect_races", "report_races_at_shutdown"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Config.{name} must be a bool, got {_show(getattr(self, name))}")
        for name in ("suppressions", "events_file", "spool_dir"):
            value = getattr(self, name)
            if value is not None:
                check_path(value, f"Config.{name}")


MAX_NAME = 100
"""Characters in a service name, instance id, environment or tag key. A clock component is
``<service>#<instance>/<8 hex>``, and the peers' limit for one is 256 characters (the core's
``MAX_COMPONENT_LEN``): two names of 100 leave room."""
MAX_TAGS = 64
MAX_TAG_VALUE = 256
MAX_BATCH_SIZE = 1_000_000
MAX_SECONDS = 24 * 3600.0
"""No interval, timeout or backoff is longer than a day (a typo in milliseconds would be)."""


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_text(value: object, what: str, limit: int, empty: bool = False) -> str:
    """A name that every header, body and file can carry: a string of at most ``limit``
    characters, valid UTF-8 (no lone surrogates), no control characters."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {_show(value)}")
    if not value and not empty:
        raise ValueError(f"{what} must not be empty")
    if len(value) > limit:
        raise ValueError(f"{what} must be at most {limit} characters, got {len(value)}: {_show(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be valid Unicode text (it holds a lone surrogate): {_show(value)}") from None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        raise ValueError(f"{what} must not hold control characters: {_show(value)}")
    return value


def check_endpoint(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ValueError(f"{what} must be an http(s) URL or None, got {_show(value)}")
    check_text(value, what, 2048)
    from urllib3.util import parse_url

    try:
        url = parse_url(value)
    except Exception as e:
        raise ValueError(f"{what} is not a valid URL ({e}): {_show(value)}") from None
    if not url.host or any(c.isspace() for c in value):
        raise ValueError(f"{what} must name a host and hold no spaces, got {_show(value)}")
    return value


def check_api_key(value: object, what: str) -> str:
    """Sent as an HTTP header: printable ASCII, no line breaks (a header injection)."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string or None")
    if len(value) > 4096 or not all(0x20 <= ord(c) < 0x7F for c in value):
        raise ValueError(f"{what} must be at most 4096 printable ASCII characters (it goes in a header)")
    return value


def check_path(value: object, what: str) -> str:
    if not isinstance(value, (str, os.PathLike)) or not os.fspath(value):
        raise ValueError(f"{what} must be a non-empty path or None, got {_show(value)}")
    path = os.fspath(value)
    if not isinstance(path, str) or "\0" in path:
        raise ValueError(f"{what} must be a text path without NUL characters, got {_show(value)}")
    return path


def _whole(config: "Config", name: str, low: int, high: int) -> None:
    value = getattr(config, name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"Config.{name} must be an int from {low} to {high}, got {_show(value)}")


def _seconds(config: "Config", name: str, positive: bool) -> None:
    value = getattr(config, name)
    low_ok = value > 0 if positive else value >= 0
    if not isinstance(value, float) or value != value or not low_ok or value > MAX_SECONDS:
        rule = "positive" if positive else "non-negative"
        raise ValueError(
            f"Config.{name} must be a {rule} number of seconds up to {MAX_SECONDS:.0f}, got {_show(value)}"
        )


@dataclass(frozen=True)
class Settings:
    """A `Config` with the environment applied and defaults filled: what the client runs on."""

    endpoint: Optional[str]
    service_name: str
    instance_id: str
    environment: str
    api_key: Optional[str]
    config: Config
    events_file: Optional[str] = None
    suppressions: Optional[str] = None
    shutdown_timeout: float = 30.0
    spool_dir: Optional[str] = None
    """The spool directory in use; None when the spool is off."""

    @classmethod
    def resolve(cls, config: Config) -> "Settings":
        """Applies the ``RACEWAY_*`` environment variables. Raises ``ValueError`` naming the
        variable when one is set to a value its field would refuse."""
        endpoint = config.endpoint
        if endpoint == DEFAULT_ENDPOINT and os.environ.get("RACEWAY_ENDPOINT"):
            endpoint = check_endpoint(os.environ["RACEWAY_ENDPOINT"], "RACEWAY_ENDPOINT")
        if endpoint is not None:
            endpoint = endpoint.rstrip("/")
        if config.api_key is None and os.environ.get("RACEWAY_API_KEY"):
            check_api_key(os.environ["RACEWAY_API_KEY"].strip(), "RACEWAY_API_KEY")
        api_key = config.api_key if config.api_key is not None else os.environ.get("RACEWAY_API_KEY")
        api_key = api_key.strip() if api_key else None
        return cls(
            endpoint=endpoint,
            service_name=config.service_name,
            instance_id=config.instance_id or _env_name("RACEWAY_INSTANCE_ID") or default_instance_id(),
            environment=config.environment,
            api_key=api_key or None,
            config=config,
            events_file=_path(config.events_file, "RACEWAY_EVENTS_FILE"),
            suppressions=_path(config.suppressions, "RACEWAY_SUPPRESSIONS"),
            shutdown_timeout=(
                config.shutdown_timeout
                if config.shutdown_timeout is not None
                else _env_seconds("RACEWAY_SHUTDOWN_TIMEOUT") or DEFAULT_SHUTDOWN_TIMEOUT
            ),
            spool_dir=(
                (_path(config.spool_dir, "RACEWAY_SPOOL_DIR") or _default_spool_dir())
                if (config.spool if config.spool is not None else _env_flag("RACEWAY_SPOOL", True))
                else None
            ),
        )


def _path(value: "Optional[str | os.PathLike[str]]", variable: str) -> Optional[str]:
    """The configured path, else the environment variable's (empty counts as unset)."""
    if value is not None:
        return os.fspath(value)
    found = os.environ.get(variable) or None
    return check_path(found, variable) if found is not None else None


DEFAULT_SHUTDOWN_TIMEOUT = 30.0


def _env_seconds(variable: str) -> Optional[float]:
    """A positive number of seconds from the environment (empty counts as unset)."""
    found = os.environ.get(variable) or None
    if found is None:
        return None
    try:
        value = float(found)
    except ValueError:
        value = float("nan")
    if value != value or not 0 < value <= MAX_SECONDS:
        raise ValueError(f"{variable} must be a positive number of seconds up to {MAX_SECONDS:.0f}, got {_show(found)}")
    return value


def _env_flag(variable: str, default: bool) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off`` (any case) from the environment; empty is unset."""
    found = (os.environ.get(variable) or "").strip().lower()
    if not found:
        return default
    if found in ("1", "true", "yes", "on"):
        return True
    if found in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{variable} must be one of 1, true, yes, on, 0, false, no, off; got {_show(found)}")


def _default_spool_dir() -> str:
    from ._spool import default_dir

    return default_dir()


def _environment_default() -> str:
    """The reference SDK's default environment: ``ENV``, else ``"development"``. An ``ENV`` that
    no event could carry raises ``ValueError`` naming it."""
    found = os.environ.get("ENV")
    return check_text(found, "ENV", MAX_NAME) if found else "development"


def _env_name(variable: str) -> Optional[str]:
    found = os.environ.get(variable) or None
    return check_text(found, variable, MAX_NAME) if found is not None else None


def default_instance_id() -> str:
    """``<hostname>-<pid>``, the host name cut so that the whole fits `MAX_NAME`."""
    try:
        host = socket.gethostname() or "instance"
    except OSError:
        host = "instance"
    pid = str(os.getpid())
    host = "".join(c for c in host if c.isprintable())[: MAX_NAME - len(pid) - 1] or "instance"
    return f"{host}-{pid}"
