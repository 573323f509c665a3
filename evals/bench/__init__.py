"""Engine benchmarks: parallel wall time, call counts, per-call overhead, context isolation
and peak memory. Run ``python -m orchestrator.evals.bench.engine [--json]``; it exits
non-zero when a target is missed."""
