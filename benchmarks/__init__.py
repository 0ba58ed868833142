"""Benchmarks: each module's ``run(out_dir, quick) -> dict`` prints a table and writes JSON.

``python -m benchmarks.run --out DIR [--only NAME ...] [--quick]`` runs the registered ones.
"""
