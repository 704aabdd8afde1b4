"""Benchmark: an ``imagefolder`` of 32x32 PNGs decoded once, then read from the uint8 cache.

Writes ``--n`` PNGs (default 50,000: CIFAR-10's training size, 10 classes, 80% train / 20% test)
into a temporary ImageFolder tree, then times, through ``bench.data.load_splits`` exactly as a cell
calls it:

* the first load: listing the tree, decoding every PNG with PIL and writing the cache entry;
* a cached load (``--rounds`` times, the median): what every later cell of a run pays: the files'
  sizes and mtimes checked against the entry and the tensors read with ``torch.load``.

    .venv/bin/python benchmarks/imagefolder_decode.py
    .venv/bin/python benchmarks/imagefolder_decode.py --n 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common
import numpy as np
import torch
from PIL import Image

from bench.data import describe_source, load_splits


def write_tree(root: Path, n: int, classes: int = 10, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(n):
        part = "test" if i % 5 == 4 else "train"
        k = (i // 5) % classes  # every class in both parts, 4 of each 5 in train
        d = root / part / f"class_{k}"
        if i < 5 * classes:
            d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), "RGB").save(d / f"{i:06d}.png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    info = _common.header("imagefolder: decode once, then read the cache")
    with tempfile.TemporaryDirectory() as tmp:
        root, cache = Path(tmp) / "pics", Path(tmp) / "cache"
        t0 = time.perf_counter()
        write_tree(root, args.n)
        t_write = time.perf_counter() - t0
        params = {"path": str(root)}
        t0 = time.perf_counter()
        first = load_splits("imagefolder", params, cache_dir=cache)
        t_decode = time.perf_counter() - t0
        cached = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            s = load_splits("imagefolder", params, cache_dir=cache)
            cached.append(time.perf_counter() - t0)
        assert torch.equal(s.train_x, first.train_x) and torch.equal(s.train_y, first.train_y)
        assert s.provenance is not None and s.provenance.cache, "the cached load did not read the cache"
        entry = next(cache.glob("imagefolder-*.pt")).stat().st_size
    t_cached = _common.med(cached)
    print(_common.table(["step", "seconds", "per image (us)"], [
        ["write the PNGs (setup)", f"{t_write:.2f}", f"{1e6 * t_write / args.n:.1f}"],
        ["first load: decode + cache", f"{t_decode:.2f}", f"{1e6 * t_decode / args.n:.1f}"],
        [f"cached load (median of {args.rounds})", f"{t_cached:.3f}", f"{1e6 * t_cached / args.n:.2f}"],
    ]))
    print(f"  {args.n} images ({first.n_train} train, {first.n_test} test), cache entry {entry / 2**20:.1f} MiB, "
          f"decode / cached = {t_decode / t_cached:.0f}x")
    print(f"  {describe_source(first)}")
    _common.write_json(args.json, {"benchmark": "imagefolder_decode", "machine": info, "n": args.n,
                                   "write_s": t_write, "decode_s": t_decode, "cached_s": cached,
                                   "cached_median_s": t_cached, "cache_entry_bytes": entry})


if __name__ == "__main__":
    main()
