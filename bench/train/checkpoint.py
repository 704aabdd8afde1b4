"""A cell's epoch checkpoint: its file format, versions, path, writing, reading, verifying and quarantine.

**Where**: ``<results>/checkpoints/<cell id>.pt`` (:func:`checkpoint_path`), one file per cell,
replaced at the end of every epoch but the last and removed by the runner once the cell's result
is stored. A damaged one is moved to ``<results>/corrupt/`` (:func:`quarantine`) and its cell
restarts from epoch 0.

**Format**: ``torch.save`` of one dict, the fields of :class:`Checkpoint`; a zip whose members each
carry a CRC-32, checked by :func:`verify_checkpoint` before loading (``torch.load`` does not check
them, so a bit flip inside the weights would load silently). It is read with
``weights_only=True``: tensors, plain containers and numbers only.

**Versions** (the ``version`` field): 2 is written today; 1 and 2 are read.

- 1: before the recipe (scheduler, EMA, augmentation) and the calibration metrics: the fields
  ``grad_scaler`` to ``best_epochs`` are absent. A cell of that time had no recipe, so it resumes
  the same, unless it has a validation split: version 1 keeps no logits of its best epochs, so
  such a cell could not temperature-scale the epochs its selection rules pick, and it restarts
  instead (:func:`resumable`).
- 2: adds ``grad_scaler``, ``scheduler``, ``ema``, ``augment_generator`` and ``best_epochs``.

**Writing**: :class:`CheckpointWriter` serialises the dict at the end of an epoch and writes it
(atomically, with fsync: :func:`bench.fileio.atomic_write`) in a background thread while the next
epoch trains.

The module imports torch only where it saves or loads: the store names a cell's checkpoint file
here, and read-only commands (``bench status``, ``bench report``) do not load torch.
"""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypedDict

from bench.fileio import Writer, atomic_write, move_aside, safe_name

if TYPE_CHECKING:
    import torch

VERSION: Final[int] = 2
READABLE_VERSIONS: Final[tuple[int, ...]] = (1, 2)


class Checkpoint(TypedDict):
    """The dict a checkpoint file holds (version 2; version 1 lacks ``grad_scaler`` to ``best_epochs``).

    ``None`` marks a part the cell does not have (no fp16 scaler, no schedule, no EMA, no
    augmentation, no CUDA device).
    """

    version: int
    cell_id: str
    epoch: int  # epochs done: the resumed cell starts with this 0-based epoch
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    grad_scaler: dict[str, Any] | None
    scheduler: dict[str, Any] | None
    ema: dict[str, Any] | None
    augment_generator: torch.Tensor | None
    best_epochs: dict[str, Any]  # per selection ("val", "test"): score, epoch, val_logits, test_logits
    generator: torch.Tensor  # the batch-order generator's state
    cpu_rng: torch.Tensor
    cuda_rng: torch.Tensor | None
    history: list[dict[str, float]]
    wall_time: float


def checkpoint_path(checkpoints_dir: str | Path, cell_id: str) -> Path:
    """Where a cell's epoch checkpoint lives (workers get the folder, not a Store)."""
    return Path(checkpoints_dir) / f"{safe_name(cell_id)}.pt"


def verify_checkpoint(path: Path) -> None:
    """Check every member's CRC-32 in the checkpoint (a zip written by ``torch.save``); raise if damaged.

    ``torch.load`` itself does not check them, so a bit flip inside the weights would load silently.
    """
    with zipfile.ZipFile(path) as z:
        bad = z.testzip()
    if bad is not None:
        raise ValueError(f"CRC mismatch in member {bad!r}")


def load_checkpoint(path: Path, cell_id: str) -> dict[str, Any] | None:
    """Load a checkpoint with ``weights_only=True``; None when there is none; raises on a corrupt file
    or one of another cell or version (the caller quarantines)."""
    import torch

    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("cell_id") != cell_id or state.get("version") not in READABLE_VERSIONS:
        raise ValueError("checkpoint belongs to another cell or version")
    return state


def resumable(state: dict[str, Any], has_validation: bool) -> bool:
    """Whether a loaded checkpoint can resume its cell to the same result as an uninterrupted run:
    a version-1 checkpoint of a cell with a validation split cannot (module docstring)."""
    return int(state.get("version", 0)) >= 2 or not has_validation


def quarantine(path: Path, corrupt_dir: Path, exc: BaseException) -> None:
    """Move the damaged checkpoint ``path`` into ``corrupt_dir`` (its results folder's ``corrupt/``), on one line."""
    move_aside(path, corrupt_dir, f"{type(exc).__name__}: {exc}", what="checkpoint",
               then="the cell restarts from epoch 0")


def resume_state(path: Path, cell_id: str, has_validation: bool, corrupt_dir: Path) -> dict[str, Any] | None:
    """The state to resume ``cell_id`` from: its verified checkpoint at ``path``, or None to start at
    epoch 0 (no file, a version it cannot resume from, or a damaged file, moved into ``corrupt_dir``)."""
    if not path.exists():
        return None
    try:
        verify_checkpoint(path)
        state = load_checkpoint(path, cell_id)
        return state if state is not None and resumable(state, has_validation) else None
    except FileNotFoundError:  # removed since the check (the runner's cleanup of a finished cell)
        return None
    except Exception as exc:  # noqa: BLE001 - any unreadable checkpoint is moved aside
        quarantine(path, corrupt_dir, exc)
        return None


class CheckpointWriter:
    """Serialise a checkpoint now, write it (atomically, with fsync) in a background thread.

    At most one write is in flight: ``submit`` and ``wait`` join the previous one first and
    re-raise its error. The bytes are taken before ``submit`` returns, so training may go on
    changing the weights while the file is written.
    """

    def __init__(self, writer: Writer | None = None) -> None:
        self._writer = writer
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, path: Path, state: Checkpoint) -> None:
        import torch

        self.wait()
        buf = io.BytesIO()
        torch.save(state, buf)
        data = buf.getvalue()
        cell_id = str(state.get("cell_id", ""))

        def write() -> None:
            try:
                atomic_write(path, data, "checkpoint", cell_id, self._writer)
            except BaseException as exc:  # noqa: BLE001 - handed to the training thread
                self._error = exc

        self._thread = threading.Thread(target=write, name="lossbench-checkpoint", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        """True once the write in flight has failed (cheap: no join)."""
        return self._error is not None

    def wait(self, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            if raise_error:
                raise error

    def landed(self, path: Path | None) -> Path | None:
        """Wait until the checkpoint in flight is on disk; return ``path``, the epoch's checkpoint (or None)."""
        self.wait()
        return path


__all__ = ["READABLE_VERSIONS", "VERSION", "Checkpoint", "CheckpointWriter", "checkpoint_path", "load_checkpoint",
           "quarantine", "resumable", "resume_state", "verify_checkpoint"]
