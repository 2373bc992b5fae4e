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
    """Events held in memory at most; when full, the oldest are dropped and counted."""
    timeout: float = 10.0
    """Seconds one HTTP request to the server may take."""
    max_stack_frames: int = 10
    """Frames kept in the stack trace of an ``Error`` event."""
    strict_context: bool = False
    """When true, tracking calls outside any execution context raise ``RuntimeError``
    instead of being ignored."""
    tags: Dict[str, str] = field(default_factory=lambda: {"sdk_language": "python"})

    def __post_init__(self) -> None:
        def positive(name: str, kind: type) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
                raise ValueError(f"Config.{name} must be a positive {kind.__name__}, got {value!r}")

        positive("batch_size", int)
        positive("max_queue_size", int)
        positive("max_stack_frames", int)
        if isinstance(self.flush_interval, int) and not isinstance(self.flush_interval, bool):
            self.flush_interval = float(self.flush_interval)
        if isinstance(self.timeout, int) and not isinstance(self.timeout, bool):
            self.timeout = float(self.timeout)
        positive("flush_interval", float)
        positive("timeout", float)
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
        )


def default_instance_id() -> str:
    try:
        host = socket.gethostname() or "instance"
    except OSError:
        host = "instance"
    return f"{host}-{os.getpid()}"
