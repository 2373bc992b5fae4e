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
    environment: str = "development"
    batch_size: int = 50
    """Events per request to the server."""
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
    race_stack_frames: int = 4
    """Frames of the caller's stack kept with each ``track_state_change`` for race reports
    (the access's own frame included); 1 keeps the location alone, 0 none. Each frame costs
    ~0.05-0.1 µs on the application thread (benchmarks/RESULTS.md)."""
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

    def __post_init__(self) -> None:
        def positive(name: str, kind: type) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
                raise ValueError(f"Config.{name} must be a positive {kind.__name__}, got {value!r}")

        positive("batch_size", int)
        positive("events_file_max_bytes", int)
        for name in ("race_stack_frames", "events_file_backups"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 64:
                raise ValueError(f"Config.{name} must be an int from 0 to 64, got {value!r}")
        for name in ("detect_races", "report_races_at_shutdown"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"Config.{name} must be a bool, got {getattr(self, name)!r}")
        for name in ("suppressions", "events_file"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (str, os.PathLike)) and os.fspath(value)):
                raise ValueError(f"Config.{name} must be a non-empty path or None, got {value!r}")
        positive("max_queue_size", int)
        positive("max_stack_frames", int)
        for name in ("flush_interval", "timeout", "retry_backoff", "retry_backoff_max"):
            value = getattr(self, name)
            if isinstance(value, int) and not isinstance(value, bool):  # 1 means 1.0
                setattr(self, name, float(value))
        positive("flush_interval", float)
        positive("timeout", float)
        positive("retry_backoff_max", float)
        if not self.retry_backoff_max < float("inf"):
            raise ValueError(f"Config.retry_backoff_max must be finite, got {self.retry_backoff_max!r}")
        if not isinstance(self.retry_backoff, float) or not 0 <= self.retry_backoff < float("inf"):
            raise ValueError(f"Config.retry_backoff must be a non-negative float, got {self.retry_backoff!r}")
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"Config.retries must be a non-negative int, got {self.retries!r}")
        if self.endpoint is not None:
            if not isinstance(self.endpoint, str) or not self.endpoint.startswith(("http://", "https://")):
                raise ValueError(f"Config.endpoint must be an http(s) URL or None, got {self.endpoint!r}")
        for name in ("service_name", "environment"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"Config.{name} must be a non-empty string")
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.tags.items()):
            raise ValueError("Config.tags must map strings to strings")


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

    @classmethod
    def resolve(cls, config: Config) -> "Settings":
        endpoint = config.endpoint
        if endpoint == DEFAULT_ENDPOINT and os.environ.get("RACEWAY_ENDPOINT"):
            endpoint = os.environ["RACEWAY_ENDPOINT"]
        if endpoint is not None:
            endpoint = endpoint.rstrip("/")
        api_key = config.api_key if config.api_key is not None else os.environ.get("RACEWAY_API_KEY")
        api_key = api_key.strip() if api_key else None
        return cls(
            endpoint=endpoint,
            service_name=config.service_name,
            instance_id=config.instance_id or os.environ.get("RACEWAY_INSTANCE_ID") or default_instance_id(),
            environment=config.environment,
            api_key=api_key or None,
            config=config,
            events_file=_path(config.events_file, "RACEWAY_EVENTS_FILE"),
            suppressions=_path(config.suppressions, "RACEWAY_SUPPRESSIONS"),
        )


def _path(value: "Optional[str | os.PathLike[str]]", variable: str) -> Optional[str]:
    """The configured path, else the environment variable's (empty counts as unset)."""
    if value is not None:
        return os.fspath(value)
    return os.environ.get(variable) or None


def default_instance_id() -> str:
    try:
        host = socket.gethostname() or "instance"
    except OSError:
        host = "instance"
    return f"{host}-{os.getpid()}"
