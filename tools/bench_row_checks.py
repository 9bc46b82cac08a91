"""Cost of the .beton row checks (CRC32 per record) against decoding the record's JPEG.

The FFCV loader checks each record the first time it reads it (selfsup.data.beton.verify). This
writes 300 synthetic 256 px JPEG q90 records (about ImageNet's stored size) to a temporary file and
times both per record, on one thread:

    OMP_NUM_THREADS=1 python tools/bench_row_checks.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from selfsup.data.beton import RowChecker, beton_info, write_beton
from selfsup.data.sources import Source


class Smooth(Source):
    """Smooth colour gradients with a little noise: JPEG sizes like natural photos."""

    name, num_classes = "smooth", 10

    def __init__(self, n: int = 300, size: int = 256) -> None:
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:size, 0:size] / size
        self.imgs = []
        for i in range(n):
            a, b, c = rng.uniform(1, 8, 3)
            img = np.stack([np.sin(a * xx + i), np.cos(b * yy), np.sin(c * (xx + yy))], -1) * 0.4 + 0.5
            img += rng.normal(0, 0.05, img.shape)
            self.imgs.append((np.clip(img, 0, 1) * 255).astype(np.uint8))

    def __len__(self) -> int:
        return len(self.imgs)

    def __getitem__(self, i: int):
        return self.imgs[i], i % 10


def main(repeats: int = 5) -> None:
    path = Path(tempfile.mkdtemp()) / "rows.beton"
    write_beton(Smooth(), path, image_mode="jpg", jpeg_quality=90, workers=1)
    ck = RowChecker(path, beton_info(path))
    rows = np.arange(ck.count)
    t = time.perf_counter()
    for _ in range(repeats):
        ck.checked[:] = False
        ck.check_rows(rows)
    crc = (time.perf_counter() - t) / (repeats * ck.count)
    field = ck._image_field
    t = time.perf_counter()
    for _ in range(repeats):
        for i in rows:
            ptr, k = int(ck.meta[field][i]["data_ptr"]), ck._bounds[i]
            cv2.imdecode(np.asarray(ck._mm[ptr : ptr + int(ck._size[k])]), cv2.IMREAD_COLOR)
    dec = (time.perf_counter() - t) / (repeats * ck.count)
    print(
        f"records {ck.count}, mean size {ck._size.mean() / 1024:.1f} KiB; row check {1e6 * crc:.1f} us/record; "
        f"cv2 JPEG decode {1e6 * dec:.1f} us/record; ratio {crc / dec:.3f}"
    )


if __name__ == "__main__":
    main()
