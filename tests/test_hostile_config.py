"""Careless and hostile configuration, as an operator meets it: one line, exit 2, nothing touched.

Every case runs `run.py` as a real process against a state folder that already holds a
database with a subscriber and an outbox with a message, and asserts the exact line on
stderr (so no traceback), the exit status, and that the state is byte-for-byte unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cli.main import main
from tests.harness import LESSONS, LINK_SECRET, REPO, clean_env
from tests.statecheck import unchanged

HOW = "make one with `openssl rand -base64 32`"
TOO_SHORT = (
    "the link-signing key is too short ({n} characters): it needs 32 random bytes, "
    f"43+ characters of base64 or 64 hex digits ({HOW})"
)
NOT_PEM = "the DKIM key is not a PEM RSA private key (-----BEGIN PRIVATE KEY-----)"
BASE_CONFIG = f"state_dir: state\nlessons:\n  dir: {LESSONS}\n"


@dataclass(frozen=True)
class Site:
    """One deployment in a folder: config.yaml, state/ with a database and an outbox."""

    root: Path

    @property
    def state(self) -> Path:
        return self.root / "state"

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.write_text(text, encoding="utf-8")
        return path

    def config(self, extra: str) -> Path:
        """config.yaml: the base settings followed by `extra`."""
        return self.write("config.yaml", BASE_CONFIG + extra)

    def run(
        self, *args: str, env: dict[str, str] | None = None, config: str | Path = "config.yaml"
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(REPO / "run.py"), "--config", str(config), *args],
            cwd=self.root,
            env=clean_env(DRG_LINK_SECRET=LINK_SECRET) if env is None else env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder with one subscriber and one message in the outbox, made once."""
    site = Site(tmp_path_factory.mktemp("prepared"))
    site.config("")
    added = site.run("subscribers", "add", "reader@example.org", "--timezone", "Europe/Berlin")
    assert added.returncode == 0, added.stderr
    sent = site.run("send-test", "1", "--to", "admin@example.org")
    assert sent.returncode == 0, sent.stderr
    assert list((site.state / "outbox" / "new").iterdir())
    return site.root


@pytest.fixture
def site(prepared: Path, tmp_path: Path) -> Site:
    """A copy of the prepared deployment, config.yaml back to the base settings."""
    root = tmp_path / "site"
    shutil.copytree(prepared, root, symlinks=True)
    made = Site(root)
    made.config("")
    return made


def refused(
    site: Site,
    line: str,
    *,
    env: dict[str, str] | None = None,
    config: str | Path = "config.yaml",
    status: int = 2,
    command: tuple[str, ...] = ("status",),
) -> None:
    """The command prints exactly `line` on stderr, exits `status`, and changes no state."""
    with unchanged(site.state):
        done = site.run(*command, env=env, config=config)
    assert (done.returncode, done.stderr) == (status, line + "\n")
    assert done.stdout == ""


@dataclass(frozen=True)
class InProcess:
    """The same command line run in this process: what it prints is the same, minus the
    interpreter's start-up, which costs seconds on a loaded machine and proves nothing more."""

    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def refused(self, site: Site, line: str, *, env: dict[str, str] | None = None) -> None:
        """Like refused(): exactly `line` on stderr, exit status 2, the state unchanged."""
        self.monkeypatch.chdir(site.root)
        for key in list(os.environ):
            self.monkeypatch.delenv(key)
        for key, value in (env or clean_env(DRG_LINK_SECRET=LINK_SECRET)).items():
            self.monkeypatch.setenv(key, value)
        umask = os.umask(0o077)
        try:
            with unchanged(site.state):
                status = main(["--config", "config.yaml", "status"])
        finally:
            os.umask(umask)
        captured = self.capsys.readouterr()
        assert (status, captured.err, captured.out) == (2, line + "\n", "")


@pytest.fixture
def inline(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> InProcess:
    return InProcess(monkeypatch, capsys)


def weak(secret: str) -> dict[str, str]:
    return clean_env(DRG_LINK_SECRET=secret)


# --- link-signing keys from the environment ----------------------------------------------------

ENV_KEYS = {
    "one-letter": ("a", TOO_SHORT.format(n=1)),
    "changeme": ("changeme", TOO_SHORT.format(n=8)),
    "secret": ("secret", TOO_SHORT.format(n=6)),
    "32-hex-digits": ("0f" * 16, TOO_SHORT.format(n=32)),
    "long-placeholder": (
        "my-password-for-links-nobody-will-ever-guess-it",
        f"the link-signing key contains the well-known word 'password': use random bytes ({HOW})",
    ),
    "repeated": ("Zq9" * 20, f"the link-signing key repeats itself: use random bytes ({HOW})"),
    "spaces": (
        "correct horse battery staple and many more words",
        f"the link-signing key must be printable ASCII with no spaces: use random bytes ({HOW})",
    ),
    "few-characters": (
        "iemuaaqaiqaqeaammaeaqmaqaeuuqaqqmaeaqeimeqaqiqueaqqueiaquaqaqemu",
        f"the link-signing key uses only 6 different characters: use random bytes ({HOW})",
    ),
    "alphabet-run": (
        "ghijklmnopqrstuvwxyzGHIJKLMNOPQRSTUVWXYZ789",
        f"the link-signing key is mostly runs of neighbouring characters: use random bytes ({HOW})",
    ),
}


@pytest.mark.parametrize("secret, problem", ENV_KEYS.values(), ids=ENV_KEYS.keys())
def test_a_weak_key_in_the_environment_is_refused(
    site: Site, inline: InProcess, secret: str, problem: str
) -> None:
    inline.refused(site, f"configuration error: $DRG_LINK_SECRET: {problem}", env=weak(secret))


def test_a_weak_key_is_refused_by_the_real_command_line(site: Site) -> None:
    # The in-process cases above, once through a real interpreter.
    refused(site, f"configuration error: $DRG_LINK_SECRET: {TOO_SHORT.format(n=1)}", env=weak("a"))


# --- link-signing keys from files ----------------------------------------------------------------


def test_an_empty_secret_file_is_an_error_not_a_fallback(site: Site) -> None:
    site.write("link.key", "\n")
    site.config("links:\n  secret_file: link.key\n")
    where = f"config.yaml:5: links.secret_file: {site.root / 'link.key'}"
    refused(site, f"configuration error: {where} is empty", env=clean_env())


def test_a_weak_key_file_names_file_and_key(site: Site) -> None:
    site.write("link.key", "changeme\n")
    site.config("links:\n  secret_file: link.key\n")
    where = f"config.yaml:5: links.secret_file: {site.root / 'link.key'}"
    refused(site, f"configuration error: {where}: {TOO_SHORT.format(n=8)}", env=clean_env())


def test_a_missing_key_file(site: Site) -> None:
    site.config("links:\n  secret_file: nowhere.key\n")
    path = site.root / "nowhere.key"
    line = f"config.yaml:5: links.secret_file: cannot read {path}: No such file or directory"
    refused(site, f"configuration error: {line}", env=clean_env())


def test_a_key_file_that_is_a_folder(site: Site) -> None:
    (site.root / "keys").mkdir()
    site.config("links:\n  secret_file: keys\n")
    line = (
        f"config.yaml:5: links.secret_file: cannot read {site.root / 'keys'}: a folder, not a file"
    )
    refused(site, f"configuration error: {line}", env=clean_env())


def test_a_key_file_that_is_not_text(site: Site) -> None:
    (site.root / "link.key").write_bytes(os.urandom(8) + b"\xff\xfe")
    site.config("links:\n  secret_file: link.key\n")
    line = f"config.yaml:5: links.secret_file: {site.root / 'link.key'} is not UTF-8 text"
    refused(site, f"configuration error: {line}", env=clean_env())


def test_a_huge_key_file(site: Site) -> None:
    site.write("link.key", "k" * (65 * 1024))
    site.config("links:\n  secret_file: link.key\n")
    line = f"config.yaml:5: links.secret_file: {site.root / 'link.key'} is larger than 64 KB"
    refused(site, f"configuration error: {line}", env=clean_env())


def test_a_weak_systemd_credential(site: Site) -> None:
    credentials = site.root / "credentials"
    credentials.mkdir()
    (credentials / "link_secret").write_text("secret\n", encoding="utf-8")
    env = clean_env(CREDENTIALS_DIRECTORY=str(credentials))
    line = f"$CREDENTIALS_DIRECTORY/link_secret: {TOO_SHORT.format(n=6)}"
    refused(site, f"configuration error: {line}", env=env)


def test_a_hand_written_generated_key_is_refused(site: Site) -> None:
    path = site.state / "link-secret"
    path.write_text("letmein\n", encoding="utf-8")
    os.chmod(path, 0o600)
    line = (
        f"state_dir: {path}: {TOO_SHORT.format(n=7)}; or delete the file to have one generated "
        "(links already sent stop working)"
    )
    refused(site, f"configuration error: {line}", env=clean_env())


def test_the_generated_key_is_strong_and_private(tmp_path: Path) -> None:
    site = Site(tmp_path)
    site.config("")
    done = site.run("subscribers", "list", env=clean_env())
    assert done.returncode == 0, done.stderr
    key = (site.state / "link-secret").read_text(encoding="utf-8").strip()
    assert len(key) >= 43 and len(set(key)) >= 16
    assert (site.state / "link-secret").stat().st_mode & 0o777 == 0o600
    assert site.state.stat().st_mode & 0o777 == 0o700


def test_an_open_state_folder_and_key_file_are_tightened(site: Site) -> None:
    os.chmod(site.state, 0o755)  # noqa: S103 - the mistake under test
    site.write("link.key", LINK_SECRET + "\n")
    os.chmod(site.root / "link.key", 0o644)
    site.config("links:\n  secret_file: link.key\n")
    done = site.run("status", env=clean_env())
    assert done.returncode == 0, done.stderr
    assert site.state.stat().st_mode & 0o777 == 0o700
    assert (site.root / "link.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_a_key_file_of_another_user_open_to_all_is_refused(site: Site) -> None:
    path = site.write("link.key", LINK_SECRET + "\n")
    os.chmod(path, 0o644)
    os.chown(path, 65534, 65534)
    site.config("links:\n  secret_file: link.key\n")
    line = (
        f"config.yaml:5: links.secret_file: {path} is a file other users can open (mode 0644) "
        "and belongs to another user: make it mode 0600 or owned by the service user"
    )
    refused(site, f"configuration error: {line}", env=clean_env())


# --- DKIM keys ---------------------------------------------------------------------------------


def pem_of(bits: int) -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


DKIM = "dkim:\n  selector: s1\n  domain: localhost\n"
# Made with `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:512` for this test only:
# the cryptography package refuses to make keys this short, verifiers refuse to use them.
KEY_512 = """-----BEGIN PRIVATE KEY-----
MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA4IyAfUkkfis5thyh
HfIBzQy2CQf9eGTQvw09PfOv4AMIh7gTw+Bg0lCrKPPkbn8VC5KJFYhpwQoW55op
V+27PQIDAQABAkBgxMv+sg2y/cfSLoZUlF2oU0kDnVjjkHbRTtBMqX7qxzUTd66h
v5hzDyOPynnG9L+LyfQOVzpg+iSNAfR5HCohAiEA+OIfFPfc4wAkyB1hHN9YX+Pt
pRV155wnsOz3uaZW21kCIQDm+D9EmKwHgAkTI/Somd6PqRXXR9JmXpm1Mt+NQrE2
hQIhALh0Baspo/hM8/Wn6IBYewveRhMyW4bC8ZurlFFwGTFJAiAjmwtt0LdcZKGB
gN57i1TjAqbqTBkkTNsXMuOBjFFzXQIhAOEqW7U/yitNUPsoav6Wh/zmOHTFRqbq
KkVthAbTXlG1
-----END PRIVATE KEY-----
"""


def test_a_dkim_key_that_is_not_a_key_is_refused_at_start(site: Site) -> None:
    site.config(DKIM)
    env = clean_env(DRG_LINK_SECRET=LINK_SECRET, DRG_DKIM_PRIVATE_KEY="not a private key")
    refused(site, f"configuration error: $DRG_DKIM_PRIVATE_KEY: {NOT_PEM}", env=env)


def test_a_dkim_key_file_with_a_public_key(site: Site) -> None:
    site.write(
        "dkim.pem", "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n-----END PUBLIC KEY-----\n"
    )
    site.config(DKIM + "  private_key_file: dkim.pem\n")
    where = f"config.yaml:7: dkim.private_key_file: {site.root / 'dkim.pem'}"
    line = f"{where}: the DKIM key is not a PEM RSA private key (-----BEGIN PRIVATE KEY-----)"
    refused(site, f"configuration error: {line}")


def test_a_dkim_key_too_short_for_verifiers(site: Site) -> None:
    site.config(DKIM)
    env = clean_env(DRG_LINK_SECRET=LINK_SECRET, DRG_DKIM_PRIVATE_KEY=KEY_512)
    problem = "the DKIM key has 512 bits; verifiers need at least 1024 bits (2048 recommended)"
    refused(site, f"configuration error: $DRG_DKIM_PRIVATE_KEY: {problem}", env=env)


def test_a_dkim_domain_not_aligned_with_from_is_a_warning(site: Site) -> None:
    site.config("dkim:\n  selector: s1\n  domain: elsewhere.example\n")
    env = clean_env(DRG_LINK_SECRET=LINK_SECRET, DRG_DKIM_PRIVATE_KEY=pem_of(1024))
    done = site.run("send-test", "1", "--to", "admin@example.org", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stderr == (
        "WARNING wiring.parts: dkim.domain elsewhere.example is not aligned with the From "
        "domain localhost (sender.address): DMARC receivers will not count this signature\n"
    )


# --- the configuration file itself ----------------------------------------------------------------


def unreadable_paths(root: Path) -> list[tuple[Path, str]]:
    """Config paths that exist in some form but cannot be read, with the reason shown."""
    loop = root / "loop.yaml"
    loop.symlink_to(loop)
    (root / "plain").write_text("x", encoding="utf-8")
    cases = [
        (loop, "Too many levels of symbolic links"),
        (root / "plain" / "config.yaml", "Not a directory"),
    ]
    if os.geteuid() != 0:  # root reads any file, whatever its mode
        locked = root / "locked.yaml"
        locked.write_text("state_dir: state\n", encoding="utf-8")
        os.chmod(locked, 0)
        cases.append((locked, "Permission denied"))
    return cases


def test_config_naming_a_folder(site: Site) -> None:
    folder = site.root / "conf.d"
    folder.mkdir()
    line = f"--config: {folder} is a folder; name a file such as config.yaml"
    refused(site, f"configuration error: {line}", config=folder)


def test_config_that_cannot_be_read(site: Site) -> None:
    for path, reason in unreadable_paths(site.root):
        line = f"configuration error: --config: cannot read {path}: {reason}"
        refused(site, line, config=path)


def test_config_that_is_a_device(site: Site) -> None:
    line = "--config: /dev/zero is not a regular file"
    refused(site, f"configuration error: {line}", config="/dev/zero")


def test_config_over_a_megabyte(site: Site) -> None:
    site.write("big.yaml", BASE_CONFIG + "#" * (1024 * 1024) + "\n")
    line = "--config: big.yaml is larger than 1 MB"
    refused(site, f"configuration error: {line}", config="big.yaml")


# --- texts an operator writes: limits, and one line where a protocol or header reads them --------

LINES: dict[str, tuple[str, str]] = {
    "sender-name-1MB": (
        "sender:\n  name: " + "x" * 1_000_000 + "\n",
        "config.yaml:5: sender.name: must be at most 100 characters",
    ),
    "sender-name-spells-an-address": (
        'sender:\n  name: "=?utf-8?q?help=40bank.example?="\n',
        "config.yaml:5: sender.name: must be one line of text without @, <, > or =? "
        "(a display name)",
    ),
    "discreet-name-at": (
        'sender:\n  discreet_name: "Notes <notes@bank.example>"\n',
        "config.yaml:5: sender.discreet_name: must be one line of text without @, <, > or =? "
        "(a display name)",
    ),
    "discreet-subject": (
        "sender:\n  discreet_subject: " + "s" * 201 + "\n",
        "config.yaml:5: sender.discreet_subject: must be at most 200 characters",
    ),
    "disclaimer": (
        "footer:\n  disclaimer: " + "d" * 501 + "\n",
        "config.yaml:5: footer.disclaimer: must be at most 500 characters",
    ),
    "public-url": (
        "web:\n  public_url: https://guide.example/" + "p" * 2000 + "\n",
        "config.yaml:5: web.public_url: must be at most 2000 characters",
    ),
    "crisis-lines": (
        "footer:\n  international:\n"
        + "    - {label: Line, discreet_label: Line, contact: call 123}\n" * 11,
        "config.yaml:5: footer.international: must have at most 10 entries",
    ),
    "crisis-label": (
        "footer:\n  international:\n    - {label: "
        + "l" * 201
        + ", discreet_label: Line, contact: call 123}\n",
        "config.yaml:6: footer.international[0].label: must be at most 200 characters",
    ),
    "local-hostname-crlf": (
        'smtp:\n  local_hostname: "relay.example\\r\\nMAIL FROM:<x@y>"\n',
        "config.yaml:5: smtp.local_hostname: must be a host name",
    ),
    "smtp-host-newline": (
        'smtp:\n  host: "relay.example\\n"\n',
        "config.yaml:5: smtp.host: must be a host name",
    ),
    "username-control": (
        'smtp:\n  username: "sam\\x00"\n',
        "config.yaml:5: smtp.username: must be one line of text",
    ),
    "dkim-selector": (
        'dkim:\n  selector: "s1\\r\\nX-Evil: 1"\n',
        "config.yaml:5: dkim.selector: must be a DNS label",
    ),
    "dkim-domain": (
        "dkim:\n  domain: exa mple.org\n",
        "config.yaml:5: dkim.domain: must be a domain",
    ),
    "web-host": (
        'web:\n  host: "127.0.0.1\\t"\n',
        "config.yaml:5: web.host: must be an address to listen on",
    ),
    "database-url": (
        'database:\n  url: "postgresql+asyncpg://guide@db/guide\\r\\n"\n',
        "config.yaml:5: database.url: must be a URL without spaces or control characters",
    ),
    "ca-file": (
        'smtp:\n  ca_file: "/etc/ssl/ca.pem\\n"\n',
        "config.yaml:5: smtp.ca_file: must be a file path",
    ),
}


@pytest.mark.parametrize("extra, line", LINES.values(), ids=LINES.keys())
def test_texts_are_bounded_and_protocol_strings_one_line(
    site: Site, inline: InProcess, extra: str, line: str
) -> None:
    site.config(extra)
    inline.refused(site, f"configuration error: {line}")


def test_a_long_sender_name_through_the_real_command_line(site: Site) -> None:
    site.config(LINES["sender-name-1MB"][0])
    refused(site, f"configuration error: {LINES['sender-name-1MB'][1]}")


def test_config_keys_come_after_the_base_lines(site: Site) -> None:
    # The line numbers above assume BASE_CONFIG is four lines; this keeps them honest.
    assert BASE_CONFIG.count("\n") == 3
    path = site.config("sender:\n  name: x\n")
    assert path.read_text(encoding="utf-8").splitlines()[4] == "  name: x"


# --- other secrets -------------------------------------------------------------------------------


SECRET_FILES: dict[str, tuple[str, str, Callable[[Path], str]]] = {
    "smtp-password-two-lines": (
        "smtp:\n  password_file: pw\n",
        "first\nsecond\n",
        lambda path: (
            f"config.yaml:5: smtp.password_file: {path}: the password must be one line without "
            "control characters"
        ),
    ),
    "database-password-empty": (
        "database:\n  url: sqlite+aiosqlite:///other.db\n  password_file: pw\n",
        "",
        lambda path: f"config.yaml:6: database.password_file: {path} is empty",
    ),
}


@pytest.mark.parametrize("extra, content, line", SECRET_FILES.values(), ids=SECRET_FILES.keys())
def test_password_files(
    site: Site, inline: InProcess, extra: str, content: str, line: Callable[[Path], str]
) -> None:
    site.write("pw", content)
    site.config(extra)
    inline.refused(site, f"configuration error: {line(site.root / 'pw')}")
