"""shoal's benchmarks: one script per figure, and the harness that runs them (``make bench``).

Figures come from here, not from timed tests. Every figure is measured side by side with a
baseline in the same run (a bare ``python3``, nginx, plain ``docker run``...) and quoted as a
ratio, because the machines are shared and noisy.

The harness::

    stats       percentiles (nearest rank), median, coefficient of variation: pure
    figures     Figure, Baseline, Target, Result: the JSON line a script prints: pure
    machine     what the machine is and how noisy it was (load, steal, a calibration loop)
    timing      taking samples: child processes by wall time, calls by time per call
    harness     Run and main(): the entry point every script ends with
    running     discovering scripts, running each as a child with a time limit
    reporting   the table, the README block, latest.json: pure
    __main__    python -m bench [--quick] [--only NAME ...]

The scripts are the other modules: a module with a top-level ``if __name__ == "__main__":``
block is a benchmark (see ``bench.harness`` for the contract); a helper module has none.
"""
