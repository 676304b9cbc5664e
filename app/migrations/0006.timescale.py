"""Rollups readable by one name: TimescaleDB hypertables, continuous aggregates, compression
and retention when the server has the extension; plain views otherwise (app/timescale.py)."""

from yoyo import step

from app.timescale import install, uninstall

__depends__ = {"0001.schema"}

steps = [step(install, uninstall)]
