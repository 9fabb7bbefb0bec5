"""Benchmarks: quality against baselines, training throughput. JSON out, tables for docs."""
