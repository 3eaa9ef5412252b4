"""Test and measurement harness (never imported by the runtime): process graph runner, probe,
demo, benchmarks, fault matrix, soak, safe-stop table."""
