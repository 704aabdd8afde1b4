"""The `bench` command line: parses flags, calls the planner, runner and renderers, prints. Nothing else."""

from bench.cli.main import app

__all__ = ["app"]
