"""Who is calling: API keys (compared in constant time), the loopback rule, and per-key rate limits.

Keys come from the profile (``[server.api_keys]``: user name = key, or ``"sha256:<hex>"`` of the
key so the profile need not hold it) and from ``$APPKIT_API_KEYS`` (``user:key,user:key``; a bare
``key`` gets a user name derived from its hash). With no key configured the server answers
loopback clients only.

The rate limit is a fixed one-minute window per user kept in a SQLite file in the data directory,
so every worker process on the host counts against the same budget.

Example:
    >>> from appkit.server.auth import KeyRing
    >>> ring = KeyRing({"alice": "sk-alice-0123456789abcdef"})
    >>> ring.identify("sk-alice-0123456789abcdef"), ring.identify("sk-wrong")
    ('alice', None)
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from appkit.config import ServerConfig

LOCAL_USER = "local"


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


class KeyRing:
    """The API keys the server accepts, each naming a user.

    Args:
        keys: user name to key, or to ``"sha256:<hex digest of the key>"``.
    """

    def __init__(self, keys: Mapping[str, str]):
        self._entries: list[tuple[str, bytes]] = []
        for user, key in keys.items():
            if key.startswith("sha256:"):
                self._entries.append((user, bytes.fromhex(key[len("sha256:"):])))
            else:
                self._entries.append((user, _digest(key)))

    @classmethod
    def from_config(cls, config: ServerConfig, environ: Mapping[str, str] | None = None) -> KeyRing:
        """The profile's keys plus those in the environment variable it names."""
        env = os.environ if environ is None else environ
        keys = dict(config.api_keys)
        for item in (env.get(config.api_keys_env, "") if config.api_keys_env else "").split(","):
            item = item.strip()
            if not item:
                continue
            user, sep, key = item.partition(":")
            if not sep:
                user, key = "key-" + hashlib.sha256(item.encode()).hexdigest()[:10], item
            keys[user.strip()] = key.strip()
        return cls(keys)

    def __bool__(self) -> bool:
        return bool(self._entries)

    @property
    def users(self) -> list[str]:
        return [user for user, _ in self._entries]

    def identify(self, presented: str) -> str | None:
        """The user whose key this is, or None; every key is compared, in constant time each."""
        digest = _digest(presented)
        found = None
        for user, expected in self._entries:
            if hmac.compare_digest(digest, expected):
                found = user
        return found


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RateLimiter:
    """Requests per user per minute, shared by every process that opens the same file.

    Example:
        >>> import tempfile, pathlib
        >>> from appkit.server.auth import RateLimiter
        >>> limiter = RateLimiter(pathlib.Path(tempfile.mkdtemp()) / "rate.sqlite", per_minute=2)
        >>> [limiter.hit("alice") for _ in range(3)][:2]
        [None, None]

    Args:
        path: the SQLite file.
        per_minute: requests allowed per user in each clock minute.
    """

    def __init__(self, path: Path, per_minute: int):
        self.path = Path(path)
        self.per_minute = per_minute
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._last_sweep = 0

    def _connect(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self.path), timeout=10, check_same_thread=False,
                                 isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS hits (user TEXT NOT NULL, window INTEGER "
                       "NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (user, window))")
            self._db = db
        return self._db

    def hit(self, user: str, now: float | None = None) -> float | None:
        """Count one request; None when allowed, else seconds until the next window."""
        now = time.time() if now is None else now
        window = int(now // 60)
        with self._lock:
            db = self._connect()
            count = db.execute(
                "INSERT INTO hits (user, window, count) VALUES (?, ?, 1) ON CONFLICT (user, window)"
                " DO UPDATE SET count = count + 1 RETURNING count", (user, window)).fetchone()[0]
            if window != self._last_sweep:
                db.execute("DELETE FROM hits WHERE window < ?", (window - 1,))
                self._last_sweep = window
        if count > self.per_minute:
            return max(1.0, (window + 1) * 60 - now)
        return None
