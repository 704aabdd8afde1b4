"""Where file-backed data sets are looked for: the data-root rule.

* An **explicit** data root (the ``data_root`` argument: ``--data-root``, or
  ``$LOSSBENCH_DATA_ROOT`` which the command line reads into it) is the only place searched: when it does not hold the data set
  that is an error naming where it looked, never a silent fallback to another copy.
* Without one, the default root ``./data`` is searched, then a distribution's copy where
  the kind has one (Debian's ``dataset-fashion-mnist`` for fashion-mnist).

Downloads (``--download``) go into the data root, explicit or default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_ROOT_ENV = "LOSSBENCH_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("data")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass(frozen=True)
class DataRoot:
    """``path``: absolute. ``origin``: how it was chosen, for messages. ``explicit``: given by the user."""

    path: Path
    origin: str
    explicit: bool


@dataclass(frozen=True)
class Places:
    """Everywhere one kind is looked for, in order: under ``root``, then ``system_dir`` (None: not at all).

    ``skipped``: the kind's distribution copy left out because the root is explicit (for messages).
    """

    root: DataRoot
    system_dir: Path | None
    skipped: Path | None = None


def resolve_data_root(data_root: Path | str | None) -> DataRoot:
    """The ``data_root`` argument, else the default ``./data``. The environment is not read here: the
    command line turns ``$LOSSBENCH_DATA_ROOT`` into the argument, which travels to every worker."""
    if data_root is not None and str(data_root) != "":
        return DataRoot(Path(data_root).expanduser().resolve(), f"--data-root / ${DATA_ROOT_ENV}", True)
    return DataRoot(DEFAULT_DATA_ROOT.resolve(), "default ./data", False)


def search_places(data_root: Path | str | None, system_dir: Path | str | None) -> Places:
    """Apply the rule: a kind's ``system_dir`` (its distribution copy) only counts without an explicit root."""
    root = resolve_data_root(data_root)
    if system_dir is None:
        return Places(root, None)
    if root.explicit:
        return Places(root, None, Path(system_dir).expanduser())
    return Places(root, Path(system_dir).expanduser())
