"""Benchmark commands: speed and memory are measured here, never asserted in timed tests."""
