"""Helpers shared by the tests and benchmarks: fixtures, synthetic streams, servers they start."""
