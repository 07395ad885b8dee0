"""``python -m tune_jobs.cli``: the same as the ``metatune`` console script."""

import sys

from tune_jobs.cli.main import main

sys.exit(main())
