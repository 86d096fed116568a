"""sd_notify over $NOTIFY_SOCKET: readiness, watchdog pings, status, reload and stop for systemd."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger(__name__)
# A STATUS= line is shown by `systemctl status`; one short line is what fits there.
STATUS_MAX = 200


def socket_address(value: str) -> str | bytes | None:
    """The address $NOTIFY_SOCKET names: a path, or an abstract name ('@' → a leading NUL)."""
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock and other forms: not a unix socket this module can use


def watchdog_seconds(env: Mapping[str, str], pid: int) -> float | None:
    """How often to ping: half of $WATCHDOG_USEC, when the watchdog is meant for `pid`."""
    owner = env.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None  # set for another process (a parent that did not unset it)
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2 / 1_000_000 if usec > 0 else None


class Notifier:
    """Sends sd_notify datagrams; does nothing when the service is not run by systemd.

    A failed send is logged and ignored: telling systemd is never a reason to stop serving
    (with Type=notify, a service that never says READY=1 is stopped by systemd itself).
    """

    def __init__(
        self,
        address: str | bytes | None,
        *,
        watchdog: float | None = None,
        monotonic_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.address = address
        self.watchdog = watchdog
        self.monotonic_ns = monotonic_ns
        self._socket: socket.socket | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Notifier:
        """The notifier systemd's environment asks for ($NOTIFY_SOCKET, $WATCHDOG_USEC)."""
        address = socket_address(env.get("NOTIFY_SOCKET", ""))
        return cls(address, watchdog=watchdog_seconds(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        """Whether there is a socket to tell."""
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """One datagram of `KEY=value` lines; whether it was sent."""
        if self.address is None:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.setblocking(False)  # never hold up the event loop for systemd
            self._socket.sendto("\n".join(fields).encode(), self.address)
        except OSError as err:
            log.warning("could not notify systemd (%s): %s", fields[0], err.strerror or err)
            return False
        return True

    def ready(self, status: str = "") -> bool:
        """Startup or a reload is complete."""
        return self.send("READY=1", *([f"STATUS={one_line(status)}"] if status else []))

    def reloading(self) -> bool:
        """A reload begins; MONOTONIC_USEC lets systemd match it to the reload it asked for."""
        return self.send("RELOADING=1", f"MONOTONIC_USEC={self.monotonic_ns() // 1000}")

    def stopping(self) -> bool:
        """The service is stopping (SIGTERM or SIGINT)."""
        return self.send("STOPPING=1", "STATUS=stopping: finishing in-flight sends")

    def status(self, text: str) -> bool:
        """A one-line summary for `systemctl status`."""
        return self.send(f"STATUS={one_line(text)}")

    def alive(self, status: str = "") -> bool:
        """A watchdog ping: the event loop runs and dispatch passes are healthy."""
        return self.send("WATCHDOG=1", *([f"STATUS={one_line(status)}"] if status else []))

    def close(self) -> None:
        """Close the socket (a later send opens it again)."""
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def one_line(text: str) -> str:
    """`text` as one line of at most STATUS_MAX characters (a newline would start a new field)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= STATUS_MAX else flat[: STATUS_MAX - 1] + "…"
