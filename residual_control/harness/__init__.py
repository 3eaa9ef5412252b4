"""Test and measurement harness (never imported by the runtime).

Process graph runner, probe, demo, benchmarks, fault matrix, soak, safe-stop table.
"""
