"""A throwaway PostgreSQL cluster for tests (the implementation is shared with the
benchmarks: :mod:`orchestrator.evals.bench.services`).

One cluster serves a whole pytest session (``postgres_cluster`` in ``tests/conftest.py``);
each test asks it for a database of its own (``postgres_url``), so tests never see each
other's rows. ``.ci/run`` installs Debian's ``postgresql``.
"""

from orchestrator.evals.bench.services import Cluster, free_port, postgres_bin, start_cluster

__all__ = ["Cluster", "free_port", "postgres_bin", "start_cluster"]
