"""lossbench harness: registry -> cells -> train -> store -> report."""

__version__ = "0.1.0"
