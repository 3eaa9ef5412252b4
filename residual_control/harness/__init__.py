"""Command-line tools: runner, demo, benchmarks, fault matrix."""
