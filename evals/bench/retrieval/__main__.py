import sys

from orchestrator.evals.bench.retrieval.run import main

sys.exit(main())
