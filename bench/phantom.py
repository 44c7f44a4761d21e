"""Seconds to synthesise one demo phantom volume (40 slices of 128x128), median of a few runs, as one JSON line.

Usage: python bench/phantom.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from cssl_core.demo.phantom import PhantomConfig, patient_rng, phantom_volume


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = PhantomConfig(n_slices=40, matrix=128)
    phantom_volume(patient_rng(config, 0), config)  # warm-up
    seconds = []
    for patient in range(1, args.repeats + 1):
        start = time.perf_counter()
        phantom_volume(patient_rng(config, patient), config)
        seconds.append(time.perf_counter() - start)
    print(
        json.dumps(
            {
                "bench": "phantom_volume",
                "slices": 40,
                "matrix": 128,
                "median_s": round(statistics.median(seconds), 4),
                "runs": [round(s, 4) for s in seconds],
            }
        )
    )


if __name__ == "__main__":
    main()
