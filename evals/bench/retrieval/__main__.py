import sys

from evals.bench.retrieval.run import main

sys.exit(main())
