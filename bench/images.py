"""Sizes and start-up times of the images and of the two binaries (one-file vs staticx).

    python bench/images.py [--runs 10]

Needs `bash build/images.sh` first (dist/smc, dist/smc-static and the smc-example-* images).
Times are medians; `docker run` includes Docker's own container set-up, so compare them only with
each other.
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARIES = {"onefile": ROOT / "dist" / "smc", "staticx": ROOT / "dist" / "smc-static"}
IMAGES = ["smc-base:latest", "smc-example-tabular:test", "smc-example-sklearn:test", "smc-example-scratch:test"]


def median_s(argv: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def gzip_size(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    print(f"{'binary':10} {'size MB':>8} {'gzip MB':>8} {'version ms':>11}")
    for name, path in BINARIES.items():
        subprocess.run([str(path), "version"], check=True, capture_output=True)  # warm the page cache
        ms = median_s([str(path), "version"], args.runs) * 1000
        print(f"{name:10} {path.stat().st_size / 1e6:8.1f} {gzip_size(path) / 1e6:8.1f} {ms:11.0f}")
    print(f"\n{'image':28} {'size MB':>8} {'docker run version ms':>22}")
    for image in IMAGES:
        size = int(subprocess.run(["docker", "image", "inspect", "--format", "{{.Size}}", image],
                                  check=True, capture_output=True, text=True).stdout)
        ms = "" if image.startswith("smc-base") else \
            f"{median_s(['docker', 'run', '--rm', image, 'version'], max(3, args.runs // 2)) * 1000:.0f}"
        print(f"{image:28} {size / 1e6:8.1f} {ms:>22}")


if __name__ == "__main__":
    main()
