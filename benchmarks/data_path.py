"""Benchmark 3: the harness's tensor batching against a torchvision DataLoader.

One epoch of Fashion-MNIST batches (batch 512, shuffled), each ending as a normalised float32
(N, 1, 28, 28) batch and its labels, three ways:

* harness: the split resident as a uint8 tensor, a seeded ``torch.randperm`` per epoch, each
  batch gathered with ``torch.index_select`` and normalised with ``Splits.normalise``: exactly
  what ``bench.train.loop`` does per step;
* DataLoader, 0 and 2 workers: a map-style dataset doing what ``torchvision.datasets.FashionMNIST``
  does per sample (``PIL.Image.fromarray(img, mode="L")``) with
  ``transforms.Compose([ToTensor(), Normalize(mean, std)])``, ``shuffle=True``, default collate.

It reports the data-only epoch time and, with ``--train`` (on by default), the time of one
training epoch of the paper's MLP fed by each (the data cost plus the same SGD steps). Variants
are interleaved round by round in one process; speed-ups are medians of per-round ratios.

    .venv/bin/python benchmarks/data_path.py
    .venv/bin/python benchmarks/data_path.py --n-train 20000 --rounds 3 --threads 1
"""

from __future__ import annotations

import argparse

import _common
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from bench.data import load_splits
from bench.models.zoo import build_model


class PILDataset(Dataset):
    """Per-sample PIL path of torchvision's MNIST-family datasets."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, transform):
        self.x = x[:, 0].numpy()  # (N, 28, 28) uint8, as torchvision keeps it
        self.y = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.x[i], mode="L")
        return self.transform(img), self.y[i]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=60000)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="0,2", help="DataLoader worker counts to compare")
    ap.add_argument("--train", action=argparse.BooleanOptionalAction, default=True,
                    help="also time a training epoch of the MLP fed by each path")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    info = _common.header("Benchmark 3: data path (harness tensor batching vs torchvision DataLoader)")
    n = args.n_train
    splits = load_splits("fashion-mnist", {"n_train": n}, None, False, None)  # the first n images
    bs = args.batch_size
    tf = transforms.Compose([transforms.ToTensor(), transforms.Normalize(splits.mean, splits.std)])
    dataset = PILDataset(splits.train_x, splits.train_y, tf)
    workers = [int(w) for w in args.workers.split(",") if w != ""]
    loaders = {w: DataLoader(dataset, batch_size=bs, shuffle=True, num_workers=w,
                             persistent_workers=w > 0, generator=torch.Generator().manual_seed(0)) for w in workers}

    # check both paths produce the same normalised pixels (up to float rounding)
    a = splits.normalise(splits.train_x[:8])
    b = torch.stack([dataset[i][0] for i in range(8)])
    max_diff = float((a - b).abs().max())

    def harness_batches():
        gen = torch.Generator().manual_seed(0)
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n, bs):
            idx = perm[i:i + bs]
            yield splits.normalise(torch.index_select(splits.train_x, 0, idx)), torch.index_select(splits.train_y, 0, idx)

    def drain(batches) -> None:
        count = 0
        for xb, yb in batches:
            count += len(yb)
        assert count == n

    def train(batches) -> None:
        torch.manual_seed(0)
        model = build_model("native", "mlp", splits.in_shape, 10, {})
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        for xb, yb in batches:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    variants = {"harness": lambda: drain(harness_batches())}
    for w in workers:
        variants[f"DataLoader {w} workers"] = lambda w=w: drain(loaders[w])
    if args.train:
        variants["harness + MLP step"] = lambda: train(harness_batches())
        for w in workers:
            variants[f"DataLoader {w} workers + MLP step"] = lambda w=w: train(loaders[w])
    times = _common.interleave(variants, rounds=args.rounds, warmup=1)
    rows, results = [], {}
    for name, ts in times.items():
        ref = times["harness + MLP step"] if "MLP" in name else times["harness"]
        speedup = _common.median_ratio(ts, ref)
        rows.append([name, _common.med(ts), f"{n / _common.med(ts):,.0f}", "1 (reference)" if ts is ref else f"{speedup:.1f}x"])
        results[name] = {"seconds": ts, "images_per_s": n / _common.med(ts), "harness_speedup": speedup}
    print(_common.table(["path (one epoch)", "seconds (median)", "images/s", "harness speed-up"], rows))
    print(f"{n} images, batch {bs}, {args.rounds} rounds; max |harness - ToTensor/Normalize| pixel difference {max_diff:.2e}")
    _common.write_json(args.json, {"benchmark": "data_path", "machine": info, "n_train": n, "batch_size": bs,
                                   "max_pixel_diff": max_diff, "results": results})


if __name__ == "__main__":
    main()
