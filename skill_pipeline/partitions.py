"""One partition per skill, keyed by the skill's id; the skill sensor adds them as skills appear."""

import dagster as dg

skills_partitions = dg.DynamicPartitionsDefinition(name="skills")
