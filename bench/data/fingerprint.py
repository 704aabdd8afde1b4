"""A data set's content fingerprint: what tells a result trained on one copy from one trained on another.

A cell's identity names its dataset by registry kind and parameters, not by content: two
folders holding other files of the same format give the same cell. The fingerprint is a
hash of the decoded splits as they are before any regime (validation holdout, label noise,
imbalance: those are part of the cell's identity already): for each of ``train_x``,
``train_y``, ``test_x``, ``test_y`` its dtype, shape and bytes, then the class names. It is
computed once per decode and kept in the decoded-split cache entry (:mod:`bench.data.cache`),
so a cached read costs nothing; generated data (``gauss``) hashes the arrays it generated,
which also catches a change of the generator. Each stored row carries it as
``data_fingerprint`` (provenance, not identity: it never changes a cell id).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import torch

VERSION = 1  # of what is hashed, and how; a change makes every stored fingerprint differ
LENGTH = 16  # hex characters kept (64 bits)


def data_fingerprint(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                     class_names: Sequence[str]) -> str:
    """The fingerprint of decoded splits (16 hex characters)."""
    h = hashlib.sha256(f"lossbench-data/{VERSION}".encode())
    for key, t in (("train_x", train_x), ("train_y", train_y), ("test_x", test_x), ("test_y", test_y)):
        t = t.detach().cpu().contiguous()
        # dtype and shape first, so that the same bytes read as another layout hash differently
        h.update(json.dumps([key, str(t.dtype), list(t.shape)]).encode())
        h.update(t.numpy())  # a C-contiguous buffer: hashed without a copy
    h.update(json.dumps([str(c) for c in class_names]).encode())
    return h.hexdigest()[:LENGTH]
