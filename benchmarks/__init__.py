"""Benchmarks of issue 6 (and the benchmark items of issues 3 and 4): scripts, not tests.

Each module is runnable (``python -m benchmarks.<name> --help``), prints a table, and writes
its CSV (and plots where useful) into ``bench-results/<name>/``. ``benchmarks.run_all`` runs
them all (``make bench``); ``benchmarks/RESULTS.md`` records the latest numbers.
"""
