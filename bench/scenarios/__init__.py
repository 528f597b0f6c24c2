"""Benchmark scenarios: every module here is imported by `bench.harness.load_scenarios`."""
