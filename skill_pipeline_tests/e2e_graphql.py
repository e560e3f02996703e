"""GraphQL the e2e test sends to ``dagster dev``, and readers of what it answers (the API the UI uses)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

Query = Callable[..., dict[str, Any]]

TICKS = """
query Ticks($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    __typename
    ... on Sensor {
      sensorState {
        status
        ticks(limit: 50) {
          tickId status timestamp runIds skipReason
          error { message }
          dynamicPartitionsRequestResults { partitionsDefName partitionKeys type }
        }
      }
    }
    ... on PythonError { message }
  }
}
"""

RUNS = """
query Runs($filter: RunsFilter) {
  runsOrError(filter: $filter) {
    __typename
    ... on Runs { results { runId status jobName tags { key value } } }
    ... on PythonError { message }
  }
}
"""

ASSET_NODES = """
{
  assetNodes {
    assetKey { path }
    dependencyKeys { path }
    dependedByKeys { path }
  }
}
"""

PARTITIONS_AND_MATERIALISATIONS = """
query Asset($key: AssetKeyInput!, $partitions: [String!]) {
  assetNodeOrError(assetKey: $key) {
    __typename
    ... on AssetNode {
      partitionKeys
      assetMaterializations(partitions: $partitions) { partition runId }
    }
  }
}
"""

LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on Error { message }
  }
}
"""

BACKFILL = """
query Backfill($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill {
      status
      numPartitions
      error { message }
      partitionStatuses { results { partitionName runId runStatus } }
    }
    ... on PythonError { message }
  }
}
"""



OVERVIEW = """
{
  assetNodeOrError(assetKey: {path: ["skills_overview"]}) {
    __typename
    ... on AssetNode {
      assetMaterializations(limit: 1) {
        runId
        metadataEntries {
          label
          __typename
          ... on TableMetadataEntry { table { records } }
          ... on FloatMetadataEntry { floatValue }
        }
      }
    }
  }
}
"""

CONFIG_SCHEMA = """
query Schema($selector: PipelineSelector!) {
  runConfigSchemaOrError(selector: $selector) {
    __typename
    ... on RunConfigSchema {
      rootConfigType { key }
      allConfigTypes {
        __typename
        key
        ... on CompositeConfigType { fields { name description configTypeKey } }
        ... on WrappingConfigType { ofType { key } }
      }
    }
    ... on PythonError { message }
  }
}
"""
OUR_RESOURCES = {"skill_store", "dataset_store", "llm", "promotion_policy"}


def overview_rows_and_shares(query: Query, rows_expected: int) -> tuple[list[dict], dict[str, float]] | None:
    """The newest skills_overview's table rows and ``real_world_pct/*`` keys, once it has ``rows_expected`` rows."""
    node = query(OVERVIEW)["assetNodeOrError"]
    assert node["__typename"] == "AssetNode", node
    if not node["assetMaterializations"]:
        return None
    entries = {e["label"]: e for e in node["assetMaterializations"][0]["metadataEntries"]}
    rows = [json.loads(record) for record in entries["skills"]["table"]["records"]]
    if len(rows) != rows_expected:
        return None
    shares = {label: e["floatValue"] for label, e in entries.items()
              if label.startswith("real_world_pct/") and e["__typename"] == "FloatMetadataEntry"}
    return rows, shares


def fields_without_description(query: Query, selector: dict[str, str]) -> list[str]:
    """Paths of the launchpad's config fields of our ops and resources that have no description.

    Walks the job's run config schema from its root: ``ops.<op>.config`` and ``resources.<ours>.config``
    (Dagster's own wrappers, loggers and executors are not ours to describe)."""
    schema = query(CONFIG_SCHEMA, selector=selector)["runConfigSchemaOrError"]
    assert schema["__typename"] == "RunConfigSchema", schema
    types = {t["key"]: t for t in schema["allConfigTypes"]}

    def fields(key: str) -> dict[str, dict]:
        kind = types.get(key, {})
        while kind.get("ofType"):  # Noneable / Array wrappers
            kind = types.get(kind["ofType"]["key"], {})
        return {f["name"]: f for f in kind.get("fields") or []}

    missing: list[str] = []
    seen = 0

    def walk(key: str, path: str) -> None:
        nonlocal seen
        for name, field in fields(key).items():
            seen += 1
            if not (field.get("description") or "").strip():
                missing.append(f"{path}.{name}")
            walk(field["configTypeKey"], f"{path}.{name}")

    root = fields(schema["rootConfigType"]["key"])
    for group in ("ops", "resources"):
        if group not in root:
            continue
        for name, node in fields(root[group]["configTypeKey"]).items():
            if group == "resources" and name not in OUR_RESOURCES:
                continue
            config = fields(node["configTypeKey"]).get("config")
            if config is not None:
                walk(config["configTypeKey"], f"{group}.{name}.config")
    assert seen >= 5, f"only {seen} config fields found for {selector['pipelineName']}: the walk proves nothing"
    return missing
