"""Benchmarks: JSON results and plots under `results/`, one dated row each in RESULTS.md.

Run from the repository (`python -m benchmarks.latency`) or installed (`cloudphone bench
latency`); modules import each other relatively so both names work.
"""
