"""The reader's country from the command line: `subscribers add --country` and an import column."""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import pytest

from guide.store import Store
from tests.test_subscribers_cli import CLI


@pytest.fixture(name="cli")
def cli_in(tmp_path: Path) -> CLI:
    return CLI(tmp_path)


def countries(cli: CLI) -> dict[str, str]:
    """Address → stored country, read back through the store."""

    async def read() -> dict[str, str]:
        path = cli.state / "guide.sqlite3"
        store = await Store.open("", sqlite_path=path, migrate=False)
        try:
            return {s.email or "": s.country async for s in store.iterate()}
        finally:
            await store.close()

    return asyncio.run(read())


def test_add_takes_a_configured_country_or_other(cli: CLI) -> None:
    assert cli("subscribers", "add", "a@example.org", "--country", "ie").code == 0
    assert cli("subscribers", "add", "b@example.org", "--country", "other").code == 0
    assert cli("subscribers", "add", "c@example.org").code == 0
    refused = cli("subscribers", "add", "d@example.org", "--country", "FR")
    assert refused.code == 1
    assert "country: 'FR' is not one of US, CA, GB, IE, AU, NZ, other" in refused.err
    assert countries(cli) == {"a@example.org": "IE", "b@example.org": "other", "c@example.org": ""}


def test_import_reads_an_optional_country_column_and_export_writes_it(
    cli: CLI, tmp_path: Path
) -> None:
    people = tmp_path / "people.csv"
    people.write_text(
        "email,timezone,send_time,country\n"
        "a@example.org,Europe/Dublin,08:00,IE\n"
        "b@example.org,UTC,08:00,\n"
        "c@example.org,UTC,08:00,Narnia\n",
        encoding="utf-8",
    )
    done = cli("subscribers", "import", str(people))
    assert done.code == 1
    assert f"{people}:4: country: 'Narnia' is not one of" in done.err
    assert countries(cli) == {"a@example.org": "IE", "b@example.org": ""}
    exported = cli("subscribers", "export", "--format", "csv")
    assert exported.code == 0
    rows = {row["email"]: row["country"] for row in csv.DictReader(io.StringIO(exported.out))}
    assert rows == {"a@example.org": "IE", "b@example.org": ""}
    # The column stays optional: files written for older versions still import.
    older = tmp_path / "older.csv"
    older.write_text("email,timezone,send_time\nd@example.org,UTC,08:00\n", encoding="utf-8")
    assert cli("subscribers", "import", str(older)).code == 0
