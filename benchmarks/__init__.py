"""Benchmarks for cascade (issue #5): ``python -m benchmarks [--quick] [--sizes ...]``.

Modules
-------
baseline  a naive vectorized NumPy engine, the same model as :func:`cascade.engine.step_loop_nb`
          but scanning every open position with boolean masks at every step and iteration
suite     the sections (end to end, baseline, threads, memory, start-up), targets, orchestration
worker    measurements that must run in a fresh process (``python -m benchmarks.worker``)
report    markdown / JSON / PNG output
"""
