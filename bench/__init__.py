"""Benchmarks: monoport against the classic stack it replaces (``make bench``)."""
