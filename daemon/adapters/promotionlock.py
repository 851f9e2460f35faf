"""The promotion lock: one gate (or promote, rollback) at a time per model, across every daemon and
command that shares a registry, so the champion a decision reads is still the champion when the
alias moves.

Where the lock lives follows from `promotion_lock_uri`, or from the tracking URI when it is empty:

- PostgreSQL (`postgresql://`, `postgresql+psycopg2://`; MLflow's backend database): a session-level
  advisory lock (`pg_advisory_lock`) on a 64-bit key derived from the model name, on a connection
  of its own. The server releases it when that session ends, so a holder that dies (kill -9, a lost
  host: TCP keepalives) frees it; a holder that hangs loses it after HOLD_S (idle_session_timeout,
  PostgreSQL 14+). A waiter gives up after WAIT_S (lock_timeout) with a TrackingError naming the
  holder, and the register stage's outbox tries again later.
- SQLite (`sqlite:///path/mlflow.db`): flock(2) on `mlflow.db.promotion-lock` beside the database;
  the kernel releases it when the holder's process dies.
- anything else (an http(s) tracking server without promotion_lock_uri): no lock. One daemon is safe;
  several need promotion_lock_uri = the server's backend store (`retraind doctor` warns).

The lock is re-entrant within a thread: the tracker holds it across creating a version and gating
it, and the gate takes it again. psycopg2 is imported only when a PostgreSQL lock is taken. The DSN's
password is never logged nor raised: every message names the server as `postgresql://user@host:port/db`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import structlog

from daemon.adapters.statedir import sqlite_path
from daemon.core.errors import ConfigError, TrackingError

NAMESPACE = "retraind.promotion:"  # what the key is derived from, before the model name
WAIT_S = 300.0  # a waiter gives up after this long (the gate holds the lock for about a second)
HOLD_S = 120.0  # PostgreSQL closes a holder's session idle this long (the lock goes with it)
CONNECT_TIMEOUT_S = 10
POLL_S = 0.05  # the file lock's retry interval
POSTGRES, FILE = "postgres", "file"
LOCK_NOT_AVAILABLE = "55P03"  # SQLSTATE of a lock wait that ran out of lock_timeout


def advisory_key(name: str) -> int:
    """The advisory lock's key of a model: the first 8 bytes of sha256("retraind.promotion:" +
    name), as the signed 64-bit integer pg_advisory_lock takes. Stable across processes, machines
    and versions of Python (never hash(), which is salted per process)."""
    digest = hashlib.sha256((NAMESPACE + name).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def is_postgres(uri: str) -> bool:
    """postgresql://, postgres:// and SQLAlchemy's postgresql+<driver>://."""
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    return scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+")


def libpq_uri(uri: str) -> str:
    """The URI psycopg2 (libpq) takes: SQLAlchemy's `+driver` dropped from the scheme."""
    scheme, rest = uri.split("://", 1)
    return f"{scheme.split('+', 1)[0].lower()}://{rest}"


def _passwords(uri: str) -> list[str]:
    """The DSN's password as written and as decoded, from the user info and from ?password=."""
    try:
        parts = urlsplit(uri)
        found = [parts.password or ""]
    except ValueError:
        return []
    found += [v for k, v in parse_qsl(parts.query, keep_blank_values=True) if k == "password"]
    raw = parts.netloc.rpartition("@")[0].partition(":")[2] if "@" in parts.netloc else ""
    return [p for p in {*found, raw, unquote(raw)} if p]


def redacted(uri: str) -> str:
    """The URI without its password (user info and ?password=), to name the server in messages;
    a URI without one unchanged."""
    if not _passwords(uri):
        return uri
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return uri.split("://", 1)[0] + "://[unparsable]"
    user = f"{parts.username}@" if parts.username else ""
    host = f"[{host}]" if ":" in host else host
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"])
    return urlunsplit((parts.scheme, f"{user}{host}{port}", parts.path, query, ""))


def scrubbed(text: str, uri: str) -> str:
    """text with every form of the DSN's password replaced (libpq quotes parts of the DSN back)."""
    for secret in sorted(_passwords(uri), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@dataclass(frozen=True)
class LockTarget:
    kind: str  # POSTGRES or FILE
    where: str  # the PostgreSQL URI (with its password: never show it) or the lock file's path

    @property
    def shown(self) -> str:
        """What the lock is, for messages and `retraind doctor`: never the password."""
        if self.kind == POSTGRES:
            return f"PostgreSQL advisory lock on {redacted(self.where)}"
        return f"file lock {self.where}"


def lock_target(tracking_uri: str, lock_uri: str = "") -> LockTarget | None:
    """Where the promotion lock lives; None: nowhere (an http(s) server without promotion_lock_uri).
    A promotion_lock_uri that is neither PostgreSQL nor SQLite is a ConfigError."""
    uri = lock_uri.strip() or tracking_uri
    if is_postgres(uri):
        return LockTarget(POSTGRES, uri)
    path = sqlite_path(uri)
    if path is not None:
        return LockTarget(FILE, str(path.with_name(path.name + ".promotion-lock")))
    if lock_uri.strip():
        raise ConfigError(
            f"promotion_lock_uri must be MLflow's backend database, postgresql://USER:PASSWORD@HOST:PORT/DB"
            f" (or sqlite:///PATH), got {redacted(uri) if '://' in uri else '[not a URI]'}"
        )
    return None


class Held:
    """A lock being held: check() raises if it was lost (PostgreSQL closed the session)."""

    def check(self) -> None:
        return None


_HELD = threading.local()  # (target, slot) -> [Held, depth] of the locks this thread holds


def _holding() -> dict[tuple[str, str, str], list[Any]]:
    found: dict[tuple[str, str, str], list[Any]] | None = getattr(_HELD, "locks", None)
    if found is None:
        found = _HELD.locks = {}
    return found


class PromotionLock:
    """held(name): the promotion lock of one model name for the duration of a with-block."""

    def __init__(
        self,
        tracking_uri: str,
        lock_uri: str = "",
        wait_s: float = WAIT_S,
        hold_s: float = HOLD_S,
    ) -> None:
        self.target = lock_target(tracking_uri, lock_uri)
        self.wait_s, self.hold_s = wait_s, hold_s

    @property
    def shown(self) -> str:
        return self.target.shown if self.target is not None else "none"

    @contextlib.contextmanager
    def held(self, name: str) -> Iterator[Held]:
        if self.target is None:
            yield Held()
            return
        # One file serves every model; a PostgreSQL key is per model.
        slot = (self.target.kind, self.target.where, name if self.target.kind == POSTGRES else "")
        holding = _holding()
        if slot in holding:  # this thread holds it already: re-entered, released by the outer block
            holding[slot][1] += 1
            try:
                yield holding[slot][0]
            finally:
                holding[slot][1] -= 1
            return
        acquire = self._postgres if self.target.kind == POSTGRES else self._file
        with acquire(name) as lock:
            holding[slot] = [lock, 1]
            try:
                yield lock
            finally:
                del holding[slot]

    @contextlib.contextmanager
    def _file(self, name: str) -> Iterator[Held]:
        assert self.target is not None
        path = Path(self.target.where)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + self.wait_s
            while True:
                try:  # flock, not fcntl's POSIX locks: those never exclude two threads of one process
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise TrackingError(
                            f"the promotion lock of model {name!r} ({path}) was not free within"
                            f" {self.wait_s:.0f} s: another retraind process on this machine holds it"
                            " (the lock goes when that process exits); nothing was changed"
                        ) from None
                    time.sleep(POLL_S)
            yield Held()
        finally:
            os.close(fd)  # releases the flock

    @contextlib.contextmanager
    def _postgres(self, name: str) -> Iterator[Held]:
        assert self.target is not None
        import psycopg2

        uri, key = self.target.where, advisory_key(name)
        server = redacted(uri)
        try:
            conn = psycopg2.connect(
                libpq_uri(uri),
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="retraind promotion lock",
                keepalives=1,
                keepalives_idle=30,
                keepalives_interval=10,
                keepalives_count=3,
            )
        except psycopg2.Error as e:
            raise TrackingError(
                f"cannot reach the promotion lock's database {server}: {scrubbed(str(e).strip(), uri)};"
                " nothing was changed (check promotion_lock_uri and that PostgreSQL is up)"
            ) from None
        try:
            conn.autocommit = True
            started = time.monotonic()
            try:
                with conn.cursor() as cur:
                    self._session(conn, cur)
                    cur.execute("SELECT pg_advisory_lock(%s)", (key,))
            except psycopg2.Error as e:
                if getattr(e, "pgcode", None) == LOCK_NOT_AVAILABLE:
                    raise TrackingError(
                        f"the promotion lock of model {name!r} on {server} (advisory key {key}) was not"
                        f" free within {self.wait_s:.0f} s: held by {_holder(conn, key)}; nothing was"
                        " changed (a holder stalled that long loses it: PostgreSQL ends a session idle"
                        f" for {self.hold_s:.0f} s)"
                    ) from None
                why = scrubbed(str(e).strip(), uri)
                raise TrackingError(f"the promotion lock of {name!r} on {server} failed: {why}") from None
            waited = time.monotonic() - started
            if waited >= 1.0:
                structlog.get_logger().info(
                    "promotion_lock_waited", model=name, seconds=round(waited, 3), lock=server
                )
            yield _PostgresHeld(conn, name, server, uri)
            _release(conn, key, name, server, uri)
        finally:
            conn.close()  # ends the session: the server releases the lock whatever happened above

    def _session(self, conn: Any, cur: Any) -> None:
        """The waiter's bound, and the holder's: a session that stalls lets the lock go."""
        cur.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(self.wait_s * 1000)}ms",))
        for setting, value in (("tcp_keepalives_idle", "30"), ("tcp_keepalives_interval", "10"),
                               ("tcp_keepalives_count", "3")):  # fmt: skip
            cur.execute("SELECT set_config(%s, %s, false)", (setting, value))
        if int(getattr(conn, "server_version", 0)) >= 140000:  # idle_session_timeout: PostgreSQL 14+
            cur.execute(
                "SELECT set_config('idle_session_timeout', %s, false)", (f"{int(self.hold_s * 1000)}ms",)
            )


class _PostgresHeld(Held):
    def __init__(self, conn: Any, name: str, server: str, uri: str) -> None:
        self.conn, self.name, self.server, self.uri = conn, name, server, uri

    def check(self) -> None:
        """The session, and so the lock, is still there: run just before the alias moves."""
        import psycopg2

        try:
            with self.conn.cursor() as cur:
                cur.execute("SELECT 1")
        except psycopg2.Error as e:
            raise TrackingError(
                f"the promotion lock of model {self.name!r} on {self.server} was lost before the"
                f" champion alias moved ({scrubbed(str(e).strip(), self.uri)}); nothing was moved"
            ) from None


def _release(conn: Any, key: int, name: str, server: str, uri: str) -> None:
    import psycopg2

    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (key,))
            row = cur.fetchone()
        released = bool(row and row[0])
    except psycopg2.Error as e:
        released, why = False, scrubbed(str(e).strip(), uri)
    else:
        why = "the session no longer held it"
    if not released:  # the moves are done; another gate may have run beside the end of this one
        structlog.get_logger().warning("promotion_lock_lost", model=name, lock=server, why=why)


def _holder(conn: Any, key: int) -> str:
    """Who holds the advisory lock (pg_locks splits a bigint key into classid and objid)."""
    import psycopg2

    high, low = (key >> 32) & 0xFFFFFFFF, key & 0xFFFFFFFF
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT a.pid, host(a.client_addr), a.application_name, a.state_change"
                " FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
                " AND l.classid::bigint = %s AND l.objid::bigint = %s",
                (high, low),
            )
            row = cur.fetchone()
    except psycopg2.Error:
        return "another session"
    if row is None:
        return "another session (gone by now)"
    pid, addr, app, since = row
    return f"backend pid {pid} ({app or 'unknown'} from {addr or 'a local socket'}, idle since {since})"
