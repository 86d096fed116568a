"""Service commands (serve, tick, status, db, subscribers): filled in by the daily loop."""

from __future__ import annotations

import argparse

from guide.config import Config


def add_service_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the service commands."""


def run_service_command(args: argparse.Namespace, config: Config) -> int:
    """Run a service command."""
    raise SystemExit(f"unknown command {args.command}")
