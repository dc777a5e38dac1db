"""keventing's benchmarks: ``make bench`` (``python -m bench.run``) measures the receiver, the dispatcher and
the ceilings they are compared with (bare HTTP, Kafka's own producer, a minimal consumer) in the same run.
Benchmarks are not tests; ``tests/integration/test_bench_smoke.py`` only checks that they start."""
