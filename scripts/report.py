"""``actlab-report`` from a checkout: ``python scripts/report.py results/<experiment> ...``
(experiments/report/cli.py has the options)."""

import sys

from experiments.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
