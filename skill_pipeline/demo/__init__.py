"""Demo data for the embedded defaults: a realistic learning app to run the pipeline on."""
