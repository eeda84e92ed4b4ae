"""Benchmarks: each figure is measured beside its baseline in the same run.

Run `python -m bench` (see docs/benchmarks.md); each row family is one module here.
"""
