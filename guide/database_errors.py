"""What a failure to open the database means to an operator: one line naming the key to fix."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from guide.errors import ConfigError, DatabaseError, GuideError
from guide.redact import redact

WHERE_PASSWORDS_COME_FROM = (
    "$DRG_DATABASE_PASSWORD, database.password_file or the database_password credential"
)
# SQLSTATE classes and codes (PostgreSQL appendix A) that only a change of configuration fixes.
_CONFIGURATION = {
    "28P01": f"wrong password? (it comes from {WHERE_PASSWORDS_COME_FROM})",
    "28000": "the server refuses this user from this host (pg_hba.conf)",
    "3D000": "create it first (deploy/postgresql.md)",
    "42501": "the user needs the right to create tables (deploy/postgresql.md)",
}


def open_failure(err: BaseException, key: str, where: str) -> GuideError:
    """The error to show for `err`, raised while opening the database at `where` (`key`)."""
    shown = redact(where)
    reason = _reason(err)
    code = _sqlstate(err)
    if code in _CONFIGURATION or (code or "").startswith("28"):
        hint = _CONFIGURATION.get(code or "", _CONFIGURATION["28000"])
        return ConfigError(key, f"cannot open {shown}: {reason}: {hint}")
    if isinstance(err, OSError):
        return DatabaseError(key, f"cannot reach {shown}: {reason} (is the server running there?)")
    return DatabaseError(key, f"cannot open {shown}: {reason}")


def _sqlstate(err: BaseException) -> str | None:
    original = err.orig if isinstance(err, DBAPIError) else err
    for candidate in (original, getattr(original, "__cause__", None)):
        code = getattr(candidate, "sqlstate", None) or getattr(candidate, "pgcode", None)
        if isinstance(code, str):
            return code
    return None


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError):
        text = err.strerror or str(err)
    elif isinstance(err, DBAPIError) and err.orig is not None:
        text = str(err.orig)
    elif isinstance(err, SQLAlchemyError):
        text = str(err)
    else:
        text = str(err) or type(err).__name__
    # One line: SQLAlchemy appends a "Background on this error" link, asyncpg a DETAIL.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return redact(lines[0] if lines else type(err).__name__)
