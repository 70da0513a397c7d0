"""Launchers and readiness helpers shared by the tests and the benchmarks (no pytest needed)."""
