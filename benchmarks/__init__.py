"""Benchmarks: the demo world, metrics, quality / robustness / latency suites and reports (torch-free)."""
