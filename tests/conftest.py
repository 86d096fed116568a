"""Session fixtures every test module can reach without importing them."""

from __future__ import annotations

from tests.backends import postgres_server_url

# database_url asks for the session's PostgreSQL by name, so it must be visible everywhere.
__all__ = ["postgres_server_url"]
