"""Helpers every benchmark shares: where results go, the RESULTS.md table, free ports."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

from cloudphone.edge.client import PhoneClient

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_MD = BENCH_DIR / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\n"
    "Every run of a benchmark under `benchmarks/` appends one dated row here; the JSON beside "
    "each row has the full distributions. Machines are shared and noisy: compare rows of the "
    "same run, and medians over several runs.\n\n"
    "| when (UTC) | benchmark | setup | result | data |\n"
    "| --- | --- | --- | --- | --- |\n"
)


def results_dir() -> Path:
    out = BENCH_DIR / "results"
    out.mkdir(exist_ok=True)
    return out


def save_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def append_results_row(benchmark: str, setup: str, result: str, data: str) -> None:
    if not RESULTS_MD.exists():
        RESULTS_MD.write_text(HEADER)
    when = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    with RESULTS_MD.open("a") as fh:
        fh.write(f"| {when} | {benchmark} | {setup} | {result} | [{Path(data).name}]({data}) |\n")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def drag(client: PhoneClient, seconds: float, hz: float) -> tuple[int, float]:
    """Drag pointer 0 (already down) in a zig-zag for `seconds` at `hz` moves per second: a
    screen that changes all the time. Returns (moves sent, seconds it took)."""
    started = time.monotonic()
    moves = 0
    while time.monotonic() - started < seconds:
        client.touch("move", 0.1 + (moves % 80) / 100, 0.3 + (moves % 50) / 100)
        moves += 1
        await asyncio.sleep(1 / hz)
    return moves, time.monotonic() - started
