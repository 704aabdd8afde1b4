"""The idx file format (MNIST's): reading and validating uint8 image and label files.

Every file is checked before use: magic number (2051 images / 2049 labels, uint8),
dimensions, exact size after decompression, and (for a train/test set of four files)
matching sample counts and image shapes. A bad file is a one-line :class:`BenchError`
naming it.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from bench.errors import BenchError, exception_line

IDX_MAGIC = {3: 0x00000803, 1: 0x00000801}  # uint8 images (2051) / uint8 labels (2049)


def ndim_of(key: str) -> int:
    """Dimensions of the idx file holding ``key`` (``train_x``/``test_x`` images, ``*_y`` labels)."""
    return 3 if key.endswith("_x") else 1


def _idx_header(head: bytes, path: Path, ndim: int, size: int) -> tuple[int, ...]:
    """Validate an idx header against the (decompressed) file ``size``; return the dims."""
    expected_magic = IDX_MAGIC[ndim]
    what = "images" if ndim == 3 else "labels"
    hint = "the file is corrupt or not an MNIST-format idx file; replace it"
    if len(head) < 4:
        raise BenchError(f"{path}: only {size} bytes, not an idx {what} file; {hint}")
    magic = int.from_bytes(head[:4], "big")
    if magic != expected_magic:
        raise BenchError(
            f"{path}: bad magic number 0x{magic:08x} (expected 0x{expected_magic:08x} = "
            f"{expected_magic}, uint8 {what}); {hint}"
        )
    hdr = 4 + 4 * ndim
    if len(head) < hdr:
        raise BenchError(f"{path}: truncated idx header ({size} bytes); {hint}")
    dims = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if any(n == 0 for n in dims):
        raise BenchError(f"{path}: idx dimensions {'x'.join(map(str, dims))} hold no data; {hint}")
    expected = hdr + math.prod(dims)
    if size != expected:
        state = "truncated" if size < expected else "has trailing bytes"
        raise BenchError(
            f"{path}: {size} bytes but its header says {'x'.join(map(str, dims))} {what} "
            f"({expected} bytes): {state}; {hint}"
        )
    return dims


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """Read an uint8 idx file (``.gz`` or plain) with ``ndim`` dimensions, fully validated."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                data = f.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:
        msg = exception_line(e)
        raise BenchError(f"{path}: cannot be read ({msg}); the file is corrupt or truncated, replace it") from None
    dims = _idx_header(data[: 4 + 4 * ndim], path, ndim, len(data))
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()
    return torch.from_numpy(arr)


def idx_dims(path: Path, ndim: int) -> tuple[int, ...]:
    """Validate an uncompressed idx file from its header and size alone (without reading the data)."""
    try:
        with open(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
        size = os.stat(path).st_size
    except OSError as e:
        raise BenchError(f"{path}: cannot be read ({e.strerror or e})") from None
    return _idx_header(head, path, ndim, size)


def check_idx_set(files: Mapping[str, Path], dims: Mapping[str, tuple[int, ...]]) -> None:
    """Check that a train/test set of idx files (keys ``train_x``, ``train_y``, ...) belongs together."""
    for split in ("train", "test"):
        nx, ny = dims[f"{split}_x"][0], dims[f"{split}_y"][0]
        if nx != ny:
            raise BenchError(
                f"{files[f'{split}_x']} holds {nx} images but {files[f'{split}_y']} holds {ny} labels; "
                "the files do not belong together, replace them"
            )
    if dims["train_x"][1:] != dims["test_x"][1:]:
        raise BenchError(
            f"{files['train_x']} has {'x'.join(map(str, dims['train_x'][1:]))} images but {files['test_x']} "
            f"has {'x'.join(map(str, dims['test_x'][1:]))}; the files do not belong together"
        )
