"""skill-pipeline: one Opik evaluation dataset per skill, kept alive by Dagster."""
