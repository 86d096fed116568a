"""A throwaway PostgreSQL server for one test session: `initdb` into a temporary folder.

Nothing is shared with a system cluster: the data directory, log, socket and password live in
one temporary folder, the server listens on a free loopback port, and `stop()` shuts it down
and removes the folder. initdb refuses to run as root, so under root (CI containers) the
server runs as the `postgres` user that Debian's package creates.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

DEBIAN_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # only used when the tests run as root
ROLE = "drg_test"
START_ATTEMPTS = 3  # a free port can be taken between choosing it and binding it
# Durability is worthless for a server that is deleted at the end of the session.
SPEED = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"


class PostgresServerError(RuntimeError):
    """The throwaway server could not be set up, started or stopped; carries its output."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(f"{message}\n{output}".rstrip())
        self.output = output


@dataclass(frozen=True)
class Account:
    """Who the server's processes run as: the current user, or `postgres` under root."""

    uid: int
    gid: int
    name: str

    @property
    def is_current(self) -> bool:
        """True when no switch of user is needed."""
        return self.uid == os.geteuid()


def server_binaries(bindir: Path) -> bool:
    """True when `bindir` holds what starting a server needs."""
    return all((bindir / name).is_file() for name in ("initdb", "pg_ctl", "postgres"))


def _version_key(bindir: Path) -> tuple[int, ...]:
    """Debian's /usr/lib/postgresql/<version>/bin, newest version first when sorted."""
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def find_bindir() -> Path | None:
    """The folder of PostgreSQL's server binaries, or None when they are not installed."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        # pg_config can come from libpq-dev alone, so its answer is checked like the others.
        done = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=30
        )
        if done.returncode == 0 and done.stdout.strip():
            candidates.append(Path(done.stdout.strip()))
    candidates += sorted(DEBIAN_ROOT.glob("*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    return next((path for path in candidates if server_binaries(path)), None)


def server_account() -> Account:
    """The account to run initdb and the server as."""
    if os.geteuid() != 0:
        return Account(os.geteuid(), os.getegid(), pwd.getpwuid(os.geteuid()).pw_name)
    try:
        entry = pwd.getpwnam(SERVER_USER)
    except KeyError as err:
        raise PostgresServerError(
            f"the tests run as root and initdb refuses root, but there is no {SERVER_USER!r} "
            "user to run it as (Debian's postgresql package creates one)"
        ) from err
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name)


def free_port() -> int:
    """A loopback TCP port nobody is listening on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class PostgresServer:
    """A running throwaway server; `url` reaches its database as a superuser."""

    bindir: Path
    root: Path
    account: Account
    port: int
    password: str

    @property
    def url(self) -> str:
        """The SQLAlchemy URL the store opens."""
        return f"postgresql+asyncpg://{ROLE}:{self.password}@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        """The data directory initdb created."""
        return self.root / "data"

    def stop_quietly(self, mode: str = "immediate") -> bool:
        """Ask pg_ctl to stop the server; True when it reports the server stopped."""
        argv: list[str | Path] = [self.bindir / "pg_ctl", "-D", self.data, "-m", mode, "-w"]
        return _run(self.account, [*argv, "stop"], self.root, check=False).returncode == 0

    def stop(self) -> None:
        """Shut the server down and delete its folder."""
        try:
            if not self.stop_quietly("fast"):
                self.stop_quietly("immediate")
        finally:
            # A leftover temporary folder is not worth failing the session over.
            shutil.rmtree(self.root, ignore_errors=True)


def _run(
    account: Account, argv: list[str | Path], cwd: Path, *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL tool as the server's account; a failure carries its output."""
    switch = not account.is_current
    # cwd is the server's own folder: the postgres user may not be able to enter ours.
    done = subprocess.run(
        [str(arg) for arg in argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
        user=account.uid if switch else None,
        group=account.gid if switch else None,
        extra_groups=[] if switch else None,  # drop root's supplementary groups too
    )
    if check and done.returncode != 0:
        raise PostgresServerError(f"{Path(argv[0]).name} failed", done.stdout + done.stderr)
    return done


def _log_tail(root: Path) -> str:
    """The end of the server log, for an error message."""
    log = root / "server.log"
    return "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else ""


def start_server(bindir: Path) -> PostgresServer:
    """initdb a fresh cluster in a temporary folder and start it on a free loopback port."""
    account = server_account()
    root = Path(tempfile.mkdtemp(prefix="drg-pg-"))
    try:
        os.chown(root, account.uid, account.gid)
        password = secrets.token_urlsafe(18)
        pwfile = root / "password"
        pwfile.write_text(password + "\n")
        os.chown(pwfile, account.uid, account.gid)
        _run(
            account,
            [
                bindir / "initdb",
                "-D",
                root / "data",
                "-U",
                ROLE,
                "-A",
                "scram-sha-256",
                f"--pwfile={pwfile}",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ],
            root,
        )
        pwfile.unlink()
        for _ in range(START_ATTEMPTS):
            server = PostgresServer(bindir, root, account, free_port(), password)
            options = (
                f"-p {server.port} -c listen_addresses=127.0.0.1 "
                f"-k {shlex.quote(str(root))} {SPEED}"
            )
            done = _run(
                account,
                [
                    bindir / "pg_ctl",
                    "-D",
                    server.data,
                    "-l",
                    root / "server.log",
                    "-w",
                    "-t",
                    "60",
                    "-o",
                    options,
                    "start",
                ],
                root,
                check=False,
            )
            if done.returncode == 0:
                return server
            # A start that timed out may have left a postmaster behind; a refused port did not.
            server.stop_quietly()
        raise PostgresServerError("pg_ctl could not start the server", _log_tail(root))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
