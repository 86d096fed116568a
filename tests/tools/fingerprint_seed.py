"""Write the originality test's fingerprints: hashed 8-word runs of a source article.

Usage: python -m tests.tools.fingerprint_seed ARTICLE [OUTPUT]

OUTPUT defaults to tests/data/seed-fingerprints.txt. The article itself is never stored in
the repository; only these hashes are, so the test runs on a bare clone.
"""

from __future__ import annotations

import argparse
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

RUN = 8
DIGITS = 16
DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "data" / "seed-fingerprints.txt"

HEADER = """\
# Fingerprints of the source article the no-contact lessons were written from.
#
# One line per distinct run of {run} consecutive words in the article: the first {digits} hex
# digits of SHA-256 over the run's words, lower-cased, with apostrophes dropped and other
# punctuation turned into spaces, joined by single spaces and encoded as UTF-8 (see
# normalise() and fingerprint() in tests/tools/fingerprint_seed.py). Sorted, deduplicated.
#
# tests/test_curriculum.py hashes every {run}-word run of every lesson the same way and fails
# if one matches, so no lesson copies the article. A hash cannot be turned back into its
# words: this file does not let anyone recover the article; it only lets someone who already
# holds a passage confirm whether it occurs in it.
#
# Made with: python -m tests.tools.fingerprint_seed <article.txt>
# Source: {words} words, {count} fingerprints.
"""


def normalise(text: str) -> list[str]:
    """Lower-case words with punctuation and apostrophes removed."""
    # Curly and straight apostrophes are dropped (not split on) so "it’s" and "its" match.
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("'", "")
    return re.sub(r"[^\w\s]", " ", text).split()


def runs(words: list[str], size: int = RUN) -> set[tuple[str, ...]]:
    """Every run of `size` consecutive words."""
    return {tuple(words[i : i + size]) for i in range(len(words) - size + 1)}


def fingerprint(run: Iterable[str]) -> str:
    """The stored hash of one run of normalised words."""
    return hashlib.sha256(" ".join(run).encode("utf-8")).hexdigest()[:DIGITS]


def fingerprints(text: str) -> list[str]:
    """The sorted, distinct fingerprints of every run in `text`."""
    return sorted({fingerprint(run) for run in runs(normalise(text))})


def read_fingerprints(path: Path) -> set[str]:
    """The fingerprints in a file written by this tool, without its comment header."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}


def render(words: int, hashes: list[str]) -> str:
    """The fingerprint file's content: the header, then one fingerprint per line."""
    header = HEADER.format(run=RUN, digits=DIGITS, words=words, count=len(hashes))
    return header + "".join(f"{digest}\n" for digest in hashes)


def main(argv: list[str] | None = None) -> int:
    """Read the article named on the command line and write its fingerprint file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("article", type=Path, help="the source article, plain UTF-8 text")
    parser.add_argument("output", type=Path, nargs="?", default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    text = args.article.read_text(encoding="utf-8")
    hashes = fingerprints(text)
    args.output.write_text(render(len(normalise(text)), hashes), encoding="utf-8")
    print(f"wrote {len(hashes)} fingerprints to {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
