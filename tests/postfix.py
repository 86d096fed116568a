"""A private Postfix for tests: its own config and queue folders, smtpd on a loopback port.

Mail to `<anyone>@relay.test` goes to local(8), which bounces it for a user that does not
exist; mail to `@guide.test` (the bounce addresses) is delivered by virtual(8) into a Maildir.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.pgserver import free_port

RELAY_DOMAIN = "relay.test"
BOUNCE_DOMAIN = "guide.test"
# master.cf: smtpd on the test's port, the daemons that deliver locally and bounce, and no
# chroot (the folders are not set up for one).
_SERVICES = """\
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
local     unix  - n n -  - local
virtual   unix  - n n -  - virtual
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def require_postfix() -> str:
    """The postfix command, or a visible skip (a failure under CI=true, where .ci/run has it)."""
    binary = shutil.which("postfix") or (
        "/usr/sbin/postfix" if os.path.exists("/usr/sbin/postfix") else None
    )
    problem = ""
    if binary is None:
        problem = "needs Debian's postfix (apt-get install postfix; .ci/run does)"
    elif os.geteuid() != 0:
        problem = "a private Postfix instance must be started as root"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    assert binary is not None
    return binary


@dataclass(frozen=True)
class Postfix:
    """A running private Postfix."""

    binary: str
    root: Path
    port: int

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    @property
    def bounces(self) -> Path:
        """The Maildir the bounce addresses' mail is delivered to."""
        return self.root / "mail" / "bounces"

    @property
    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def postfix(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.binary, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    def wait_for_bounce(self, about: str, timeout: float = 15.0) -> Path:
        """The report about `about` delivered to the bounce Maildir (Postfix takes its time)."""
        deadline = time.monotonic() + timeout
        new = self.bounces / "new"
        while time.monotonic() < deadline:
            found = sorted(new.iterdir()) if new.is_dir() else []
            # Other recipients' reports (a test domain with no DNS) may come first.
            for path in found:
                if f"Final-Recipient: rfc822; {about}".encode() in path.read_bytes():
                    return path
            time.sleep(0.05)
        raise AssertionError(f"no report from Postfix within {timeout} s; its log:\n{self.log}")


def _main_cf(root: Path, owner: pwd.struct_passwd) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
mail_owner = {owner.pw_name}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = {RELAY_DOMAIN}
mydomain = {RELAY_DOMAIN}
myorigin = {RELAY_DOMAIN}
mydestination = {RELAY_DOMAIN}
mynetworks = 127.0.0.0/8
# No aliases and no recipient table: smtpd accepts every local name, local(8) bounces
# the ones with no account, after the SMTP session answered 250.
alias_maps =
alias_database =
local_recipient_maps =
virtual_mailbox_domains = {BOUNCE_DOMAIN}
virtual_mailbox_base = {root}/mail
virtual_mailbox_maps = static:bounces/
virtual_uid_maps = static:{owner.pw_uid}
virtual_gid_maps = static:{owner.pw_gid}
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
smtputf8_enable = no
biff = no
"""


@pytest.fixture
def postfix() -> Iterator[Postfix]:
    """A private Postfix, stopped and removed after the test."""
    binary = require_postfix()
    try:
        owner = pwd.getpwnam("postfix")
    except KeyError:
        pytest.fail("the postfix package is installed but its 'postfix' user is missing")
    # A short path: Postfix's Unix sockets live under the queue folder (108-byte limit).
    root = Path(tempfile.mkdtemp(prefix="drg-pfx-"))
    # Postfix's daemons run as its own user and must reach the queue folder inside.
    os.chmod(root, 0o755)  # noqa: S103
    for sub in ("etc", "queue", "data", "mail"):
        (root / sub).mkdir()
    for sub in ("data", "mail"):
        os.chown(root / sub, owner.pw_uid, owner.pw_gid)
    server = Postfix(binary, root, free_port())
    (root / "etc" / "main.cf").write_text(_main_cf(root, owner), encoding="ascii")
    smtpd = f"127.0.0.1:{server.port} inet n - n - - smtpd\n"
    (root / "etc" / "master.cf").write_text(smtpd + _SERVICES, encoding="ascii")
    started = server.postfix("start")
    try:
        if started.returncode != 0:
            raise AssertionError(f"postfix start failed: {started.stderr}\n{server.log}")
        yield server
    finally:
        server.postfix("stop")
        shutil.rmtree(root, ignore_errors=True)
