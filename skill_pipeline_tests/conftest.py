import os

import pytest

# Nothing in the test suite may reach for the internet: Opik's telemetry and LiteLLM's cost map
# are switched off before any test imports them.
os.environ.setdefault("OPIK_SENTRY_ENABLE", "false")
os.environ.setdefault("OPIK_ANALYTICS_ENABLE", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("OPIK_CHECK_TLS_CERTIFICATE", "false")

# The loopback fakes' fixtures, for every test module (imported after the environment is set).
from skill_pipeline_tests.fakes.anthropic_server import anthropic_fake  # noqa: E402,F401
from skill_pipeline_tests.fakes.opik_server import opik_fake  # noqa: E402,F401
from skill_pipeline_tests.fakes.postgrest_server import postgrest_fake  # noqa: E402,F401

PRODUCTION_VARIABLES = (
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "OPIK_API_KEY",
    "OPIK_URL_OVERRIDE",
    "OPIK_WORKSPACE",
    "OPIK_PROJECT_NAME",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
)


@pytest.fixture(autouse=True)
def _no_production_credentials(monkeypatch, tmp_path):
    """Every test starts on the embedded defaults, in its own folder, whatever the shell exports."""
    for name in PRODUCTION_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SKILL_PIPELINE_HOME", str(tmp_path / "skill_pipeline_home"))
    yield

