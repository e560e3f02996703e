"""``python -m benchmarks [--quick] [--only NAME] [--output PATH]``: see ``benchmarks.report``."""

import sys

from benchmarks.common import offline_environment

offline_environment()  # before any benchmark imports an SDK that might reach for the internet

from benchmarks.report import main  # noqa: E402

sys.exit(main())
