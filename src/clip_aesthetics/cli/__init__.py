"""Parsing only: the `clip-aesthetics` subcommands and the MLproject generated from the same settings."""

from clip_aesthetics.cli.app import main

__all__ = ["main"]
