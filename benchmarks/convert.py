"""Colour conversion with and without damage, on the same frames in the same run.

The simulated phone's Touch app is tapped at random places (down/up at one point, as a finger
does); each rendered frame is converted once whole and once from its damage bands. Reports ms
per frame for both (median, p95) and the share of rows converted.

Run: `python -m benchmarks.convert` (appends a row to RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

import numpy as np
from cloudphone.codecs.convert import ColourConverter
from cloudphone.vm.guest import RawFrame, TouchEvent
from cloudphone.vm.simulated.ui import PhoneUI

from .common import append_results_row, results_dir, save_json


def run(width: int, height: int, taps: int, seed: int = 1) -> dict[str, Any]:
    rng = random.Random(seed)
    ui = PhoneUI(width, height)
    ui.open("Touch")
    frames = []
    for i in range(taps):
        x, y = rng.uniform(0.05, 0.95), rng.uniform(0.1, 0.9)
        ui.apply(TouchEvent("down", 0, x, y))
        image = ui.render(i, i, stamp=True)
        frames.append(RawFrame(image, "rgb24", 0.0, i, i, ui.last_damage))
        ui.apply(TouchEvent("up", 0, x, y))
    patched, whole = ColourConverter(width, height), ColourConverter(width, height)
    patched.convert(RawFrame(frames[0].data, "rgb24", 0.0))
    full_ms, damage_ms = [], []
    for frame in frames[1:]:  # interleaved, so both see the same machine load
        started = time.perf_counter()
        whole.convert(RawFrame(frame.data, "rgb24", 0.0))
        full_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        patched.convert(frame)
        damage_ms.append((time.perf_counter() - started) * 1000)
    rows_share = patched.rows_converted / (height * len(frames))
    return {
        "full_ms_p50": round(float(np.median(full_ms)), 2),
        "full_ms_p95": round(float(np.percentile(full_ms, 95)), 2),
        "damage_ms_p50": round(float(np.median(damage_ms)), 2),
        "damage_ms_p95": round(float(np.percentile(damage_ms, 95)), 2),
        "rows_converted_share": round(rows_share, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", default="720x1280")
    parser.add_argument("--taps", type=int, default=200)
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    result = {
        "benchmark": "convert",
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
        "size": args.size,
        **run(width, height, args.taps),
    }
    name = f"convert-{time.strftime('%Y%m%d-%H%M%S')}"
    save_json(results_dir() / f"{name}.json", result)
    append_results_row(
        "convert",
        f"{args.size}, {args.taps} taps in the Touch app",
        f"RGB->YUV whole {result['full_ms_p50']}/{result['full_ms_p95']} ms vs damage bands "
        f"{result['damage_ms_p50']}/{result['damage_ms_p95']} ms (p50/p95), "
        f"{result['rows_converted_share']:.0%} of rows converted",
        f"results/{name}.json",
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
