"""Benchmarks of skill-pipeline: speed is a feature, measured side by side in one run.

``make bench`` (``python -m benchmarks``) runs every benchmark, prints its figures and writes
``benchmarks/RESULTS.md`` (machine, date, figures, target vs measured). One module per benchmark,
each with ``run(quick: bool = False) -> list[dict]`` (rows of figures) and ``checks(rows)``:

- ``generation``: N skills against the Anthropic fake at 200 ms a call, concurrent vs sequential;
- ``promotion_scan``: ``gold_standard_candidates``' work at 10⁴–10⁶ answers, seconds and peak memory;
- ``sync``: writes of a dataset sync (first, unchanged, 5 promoted), local and Opik;
- ``sensor_tick``: ``skill_sensor`` over 10,000 active skills on a real Dagster instance.

Targets are checked here, never in unit tests: the smoke test
(``skill_pipeline_tests/test_benchmarks_smoke.py``) runs each at a tiny size for the shape of its
figures only.
"""
