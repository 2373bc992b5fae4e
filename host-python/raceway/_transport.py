"""Sending request bodies to ``POST {endpoint}/events`` over a pooled, reused connection.

Only the flusher thread calls `Transport.send`: sending never happens on an application thread.
The API key goes in ``Authorization`` on this connection and nowhere else.
"""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from typing import Optional

import urllib3
from urllib3.util.retry import Retry

log = logging.getLogger("raceway")


class Outcome(enum.Enum):
    SENT = "sent"
    BACKPRESSURE = "backpressure"  # 206: the server's queue is full; send again later
    REJECTED = "rejected"  # a 4xx other than 429: sending again cannot help
    FAILED = "failed"  # connection errors, timeouts, 5xx after retries


@dataclass
class Result:
    outcome: Outcome
    status: Optional[int] = None
    reason: str = ""


class Transport:
    def __init__(self, endpoint: str, api_key: Optional[str], timeout: float, retries: int = 2):
        self.url = f"{endpoint}/events"
        self.headers = {"Content-Type": "application/json", "User-Agent": "raceway-python-wasm/0.1"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        retry = Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            backoff_factor=0.2,
            backoff_max=5.0,
            backoff_jitter=0.2,
            status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True,
            raise_on_status=False,
            raise_on_redirect=False,
        )
        self.pool = urllib3.PoolManager(
            num_pools=1, maxsize=1, retries=retry, timeout=urllib3.Timeout(total=timeout)
        )

    def send(self, body: str) -> Result:
        try:
            resp = self.pool.request("POST", self.url, body=body.encode("utf-8"), headers=self.headers)
        except urllib3.exceptions.HTTPError as e:
            return Result(Outcome.FAILED, None, f"{type(e).__name__}: {e}")
        status = resp.status
        if status == 200:
            return Result(Outcome.SENT, status)
        if status == 206:
            return Result(Outcome.BACKPRESSURE, status, "server queue full (206)")
        reason = _reason(resp)
        if 400 <= status < 500 and status != 429:
            return Result(Outcome.REJECTED, status, reason)
        return Result(Outcome.FAILED, status, reason)

    def close(self) -> None:
        self.pool.clear()


def _reason(resp: "urllib3.BaseHTTPResponse") -> str:
    """The server's error text from its ``{"success", "data", "error"}`` envelope, if any."""
    text = resp.data[:500].decode("utf-8", "replace") if resp.data else ""
    try:
        envelope = json.loads(text)
        if isinstance(envelope, dict) and envelope.get("error"):
            return f"HTTP {resp.status}: {envelope['error']}"
    except ValueError:
        pass
    return f"HTTP {resp.status}: {text[:200]}"
