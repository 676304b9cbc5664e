"""Argument types shared by the `billing` sub-commands."""

from __future__ import annotations

import argparse
from datetime import date


def iso_day(text: str) -> date:
    """A calendar day YYYY-MM-DD; anything else is argparse's clear usage error (exit 2)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None
