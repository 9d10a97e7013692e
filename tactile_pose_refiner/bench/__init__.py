"""Benchmarks: commands that measure and print numbers (speed, quality)."""
