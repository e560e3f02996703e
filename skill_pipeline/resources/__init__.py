"""One small interface per external system, each with a real and an embedded implementation."""

import os
from pathlib import Path


def local_home() -> Path:
    """Where the embedded defaults keep their SQLite files (``SKILL_PIPELINE_HOME``, else ``./.skill_pipeline``)."""
    return Path(os.environ.get("SKILL_PIPELINE_HOME", ".skill_pipeline")).resolve()
