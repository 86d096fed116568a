"""`subscribers import` throughput: N generated rows through the real command line, on SQLite.

    .venv/bin/python bench/import.py --rows 100000

Writes N good rows to a temporary CSV, then runs `run.py --config <tmp config> subscribers
import` twice against a temporary state directory: the first run adds every row, the second
finds every row already there (the idempotent re-run). Prints rows/s and total time for each,
including the command's start-up. Not part of the test suite.

Measured on the 2-core development VM, 100,000 rows, one run each (times include start-up):
    before, a transaction per row:    first    290 rows/s (344.3 s), second   349 rows/s (286.7 s)
    after, a transaction per 1,000:   first  8,496 rows/s  (11.8 s), second 13,942 rows/s (7.2 s)
The "before" run shared the cores with a test run (the issue measured about 460 rows/s alone);
each commit is an fsync (synchronous=FULL), which is what batching saves.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Kathmandu", "UTC")


def write_rows(path: Path, count: int) -> None:
    """`count` distinct, valid rows in the import format."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("email", "name", "timezone", "send_time", "discreet", "sequence"))
        for i in range(count):
            writer.writerow(
                (
                    f"reader{i}@example.org",
                    "Sam" if i % 3 else "",
                    ZONES[i % len(ZONES)],
                    f"{6 + i % 4:02d}:{i % 60:02d}",
                    "yes" if i % 5 == 0 else "no",
                    "",
                )
            )


def run_import(config: Path, rows: Path) -> tuple[float, str]:
    """Seconds the whole command took, and its summary line."""
    # Only the temporary config counts: no $DRG_* setting of the caller's leaks in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRG_")}
    command = [sys.executable, str(REPO / "run.py"), "--config", str(config)]
    started = time.perf_counter()
    done = subprocess.run(
        [*command, "subscribers", "import", str(rows)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"import failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed, done.stdout.strip()


def main() -> None:
    """Generate the rows, import them twice, print the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="drg-import-") as tmp:
        folder = Path(tmp)
        config = folder / "config.yaml"
        settings = {"state_dir": str(folder / "state"), "lessons": {"dir": str(REPO / "lessons")}}
        config.write_text(yaml.safe_dump(settings), encoding="utf-8")
        rows = folder / "rows.csv"
        write_rows(rows, args.rows)
        for label in ("first import (all new)", "second import (all present)"):
            seconds, summary = run_import(config, rows)
            print(
                f"{label:28}: {args.rows / seconds:8.0f} rows/s  "
                f"({args.rows:,} in {seconds:.1f} s)  {summary}"
            )


if __name__ == "__main__":
    main()
