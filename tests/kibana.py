"""The requests Kibana 8.19 sends for its saved objects, built from docker/kibana/*.ndjson.

Only the shapes our saved objects use are translated; anything else raises, so a new
panel with an unhandled operation or KQL form fails its test instead of passing untested.

- KQL (kbn-es-query): `field:value` becomes a `match` (`match_phrase` when quoted),
  `field:*` an `exists`, `field > n` a `range`, each in a one-clause `bool.should`; free text
  a lenient `multi_match`. Lucene syntax becomes a `query_string` with `analyze_wildcard`.
- Discover and dashboards add the time range as a `range` filter on the data view's time
  field, with `now-…` resolved to absolute dates in the browser (an ISO start is kept).
- Lens (esaggs): bucket columns nest in `columnOrder`, metrics sit in the innermost bucket;
  `terms` with `secondaryFields` is a `multi_terms`; a column's own filter wraps its metric in a
  `filter` aggregation; `last_value` is a one-hit `top_hits` sorted on its sort field; a date
  histogram with `includeEmptyRows` has `min_doc_count: 0` and the time range as bounds.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

SAVED_OBJECTS = Path(__file__).resolve().parent.parent / "docker" / "kibana" / "saved_objects.ndjson"
RECORDS = "___records___"  # Lens's "field" of a document count
_RELATIVE = re.compile(r"now-(\d+)([dwMy])")
_DAYS = {"d": 1, "w": 7, "M": 30, "y": 365}
_CALENDAR_UNITS = {"m", "h", "d", "w", "M", "q", "y"}


def saved_objects(path: Path = SAVED_OBJECTS) -> dict[tuple[str, str], dict[str, Any]]:
    """Every saved object of the file by (type, id): ids are unique per type only."""
    objects = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(o["type"], o["id"]): o for o in objects}


@dataclass(frozen=True)
class TimeWindow:
    start: datetime
    end: datetime

    @classmethod
    def resolve(cls, start: str, end: str, now: datetime | None = None) -> TimeWindow:
        """A saved `now-30d` or ISO start .. `now` as the browser resolves it (months 30 days, years 365)."""
        now = now or datetime.now(UTC)
        if end != "now":
            raise NotImplementedError(f"time range ending {end!r}")
        if match := _RELATIVE.fullmatch(start):
            return cls(now - timedelta(days=int(match.group(1)) * _DAYS[match.group(2)]), now)
        try:
            return cls(datetime.fromisoformat(start), now)
        except ValueError:
            raise NotImplementedError(f"time range starting {start!r}") from None

    def range_filter(self, time_field: str) -> dict[str, Any]:
        iso = {"gte": self.start.isoformat(), "lte": self.end.isoformat()}
        return {"range": {time_field: {**iso, "format": "strict_date_optional_time"}}}


def panel_window(dashboard: dict[str, Any], obj: dict[str, Any]) -> TimeWindow:
    """The time range a dashboard's panel of `obj` shows: its own (customised on the panel), else the dashboard's."""
    attributes = dashboard["attributes"]
    name = next(r["name"] for r in dashboard["references"] if (r["type"], r["id"]) == (obj["type"], obj["id"]))
    panel_ref = name.partition(":")[2]
    panel = next(p for p in json.loads(attributes["panelsJSON"]) if p.get("panelRefName") == panel_ref)
    own = panel.get("embeddableConfig", {}).get("timeRange")
    if own:
        return TimeWindow.resolve(own["from"], own["to"])
    return TimeWindow.resolve(attributes["timeFrom"], attributes["timeTo"])


def kql(query: str) -> dict[str, Any] | None:
    """The DSL of one KQL clause (None for an empty query)."""
    text = query.strip()
    if not text:
        return None
    nested = re.fullmatch(r"([\w.@-]+)\s*:\s*\{(.*)\}", text)
    if nested:  # path:{ field:value }, inner fields relative to the path, as Kibana's KQL reads them
        path, inner = nested.groups()
        field_clause = kql(re.sub(r"^\s*([\w.@-]+)", rf"{path}.\1", inner))
        return {"nested": {"path": path, "query": field_clause, "score_mode": "none"}}
    compared = re.fullmatch(r"([\w.@-]+)\s*(<=|>=|<|>)\s*(\S+)", text)
    if compared:
        field, op, value = compared.groups()
        bound = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
        clause: dict[str, Any] = {"range": {field: {bound: value}}}
    elif matched := re.fullmatch(r"([\w.@-]+)\s*:\s*(.+)", text):
        field, value = matched.group(1), matched.group(2).strip()
        if value == "*":
            clause = {"exists": {"field": field}}
        elif len(value) > 1 and value[0] == value[-1] == '"':
            clause = {"match_phrase": {field: value[1:-1]}}
        elif re.fullmatch(r"[^\s()*\"]+", value):
            clause = {"match": {field: value}}
        else:
            raise NotImplementedError(f"KQL {query!r}")
    elif re.search(r"[():<>]|\b(?:and|or|not)\b", text, re.IGNORECASE):
        raise NotImplementedError(f"KQL {query!r}")
    else:
        return {"multi_match": {"type": "best_fields", "query": text, "lenient": True}}
    return {"bool": {"should": [clause], "minimum_should_match": 1}}


def query_dsl(query: dict[str, Any]) -> dict[str, Any] | None:
    """A saved `{query, language}` as Kibana sends it."""
    if query.get("language") == "lucene":
        text = query.get("query") or ""
        return {"query_string": {"query": text, "analyze_wildcard": True, "time_zone": "UTC"}} if text else None
    return kql(query.get("query") or "")


def bool_query(
    queries: list[dict[str, Any]], filters: list[dict[str, Any]], window: TimeWindow, time_field: str
) -> dict[str, Any]:
    if filters:
        raise NotImplementedError("filter pills")
    must = [dsl for dsl in (query_dsl(q) for q in queries) if dsl is not None]
    return {"bool": {"must": must, "filter": [window.range_filter(time_field)], "should": [], "must_not": []}}


def search_request(search: dict[str, Any], window: TimeWindow, time_field: str) -> dict[str, Any]:
    """What Discover (or a saved-search panel) sends: the query, its sort, the fields."""
    source = json.loads(search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"])
    sort = [{field: {"order": order, "unmapped_type": "boolean"}} for field, order in search["attributes"]["sort"]]
    return {
        "query": bool_query([source["query"]], source.get("filter", []), window, time_field),
        "sort": sort,
        "fields": [{"field": "*", "include_unmapped": True}],
        "size": 100,
        "track_total_hits": True,
    }


@dataclass(frozen=True)
class LensRequest:
    body: dict[str, Any]
    buckets: list[str]  # bucket column ids, outermost first
    metrics: list[str]  # metric column ids


def _metric(column: dict[str, Any]) -> dict[str, Any] | None:
    """The aggregation of a metric column (None: the bucket's doc_count is the value)."""
    operation, field = column["operationType"], column.get("sourceField")
    if operation == "count":
        if field != RECORDS:
            raise NotImplementedError(f"count of {field}")
        agg = None
    elif operation in ("max", "min", "sum", "avg", "average", "median"):
        name = {"average": "avg", "median": "percentiles"}.get(operation, operation)
        agg = {name: {"field": field, **({"percents": [50]} if name == "percentiles" else {})}}
    elif operation == "unique_count":
        agg = {"cardinality": {"field": field}}
    elif operation == "last_value":
        sort = column["params"]["sortField"]
        agg = {
            "top_hits": {"size": 1, "sort": [{sort: {"order": "desc"}}], "fields": [{"field": field}], "_source": False}
        }
    else:
        raise NotImplementedError(f"Lens operation {operation}")
    if column.get("filter") and agg is not None:
        column_filter = query_dsl(column["filter"]) or {"match_all": {}}
        agg = {"filter": column_filter, "aggs": {"value": agg}}
    return agg


def _bucket(
    column: dict[str, Any], columns: dict[str, dict[str, Any]], window: TimeWindow, time_zone: str
) -> dict[str, Any]:
    operation, field, params = column["operationType"], column["sourceField"], column.get("params", {})
    if operation == "date_histogram":
        interval = params["interval"]
        unit = re.fullmatch(r"1([a-zA-Z])", interval)
        if not unit or unit.group(1) not in _CALENDAR_UNITS:
            raise NotImplementedError(f"date histogram interval {interval!r}")  # "auto" depends on the screen
        histogram: dict[str, Any] = {"field": field, "calendar_interval": interval, "time_zone": time_zone}
        if params.get("includeEmptyRows"):
            bounds = {"min": int(window.start.timestamp() * 1000), "max": int(window.end.timestamp() * 1000)}
            histogram |= {"min_doc_count": 0, "extended_bounds": bounds}
        else:
            histogram["min_doc_count"] = 1
        return {"date_histogram": histogram}
    if operation == "terms":
        order_by = params["orderBy"]
        if order_by["type"] == "alphabetical":
            order = {"_key": params["orderDirection"]}
        elif columns[order_by["columnId"]]["operationType"] == "count":
            order = {"_count": params["orderDirection"]}
        else:
            order = {order_by["columnId"]: params["orderDirection"]}
        options = {"size": params["size"], "order": order}
        if params.get("secondaryFields"):
            fields = [{"field": f} for f in [field, *params["secondaryFields"]]]
            return {"multi_terms": {"terms": fields, **options}}
        return {"terms": {"field": field, **options}}
    raise NotImplementedError(f"Lens bucket operation {operation}")


def lens_request(lens: dict[str, Any], window: TimeWindow, time_field: str, time_zone: str = "UTC") -> LensRequest:
    """The search Lens sends for its one layer: the chart's query and time range, its aggs.

    time_zone is the browser's (Kibana's dateFormat:tz defaults to it): it decides the days.
    """
    layers = lens["attributes"]["state"]["datasourceStates"]["formBased"]["layers"]
    if len(layers) != 1:
        raise NotImplementedError(f"{lens['id']}: {len(layers)} layers")
    (layer,) = layers.values()
    columns = layer["columns"]
    order = layer["columnOrder"]
    buckets = [c for c in order if columns[c]["isBucketed"]]
    metrics = [c for c in order if not columns[c]["isBucketed"]]
    metric_aggs = {c: agg for c in metrics if (agg := _metric(columns[c])) is not None}
    aggs: dict[str, Any] = dict(metric_aggs)
    for column_id in reversed(buckets):
        bucket = _bucket(columns[column_id], columns, window, time_zone)
        ordered_by = next(iter(bucket.get("terms", bucket.get("multi_terms", {})).get("order", {})), "")
        if ordered_by in metric_aggs and ordered_by not in aggs:
            aggs[ordered_by] = metric_aggs[ordered_by]  # ordering needs the metric at this level too
        aggs = {column_id: {**bucket, **({"aggs": aggs} if aggs else {})}}
    state = lens["attributes"]["state"]
    body = {
        "size": 0,
        "query": bool_query([state["query"]], state.get("filters", []), window, time_field),
        "aggs": aggs,
    }
    return LensRequest(body=body, buckets=buckets, metrics=metrics)


def lens_rows(request: LensRequest, response: dict[str, Any]) -> list[dict[str, Any]]:
    """The table Lens draws: one row per innermost non-empty bucket, metric values filled in."""
    rows: list[dict[str, Any]] = []

    def value(bucket: dict[str, Any], column_id: str) -> Any:
        if column_id not in bucket:
            return bucket["doc_count"]  # a count column
        agg = bucket[column_id]
        agg = agg.get("value", agg) if isinstance(agg.get("value"), dict) else agg
        if "hits" in agg:
            hits = agg["hits"]["hits"]
            return next(iter(hits[0].get("fields", {}).values()), None) if hits else None
        if "values" in agg:
            return next(iter(agg["values"].values()), None)
        return agg.get("value")

    def walk(node: dict[str, Any], depth: int, keys: dict[str, Any]) -> None:
        if depth == len(request.buckets):
            if node.get("doc_count", 1):
                rows.append(keys | {m: value(node, m) for m in request.metrics})
            return
        column_id = request.buckets[depth]
        for bucket in node[column_id]["buckets"]:
            key = bucket["key"] if isinstance(bucket["key"], list) else bucket.get("key_as_string", bucket["key"])
            walk(bucket, depth + 1, keys | {column_id: key})

    walk({"doc_count": response["hits"]["total"]["value"], **response["aggregations"]}, 0, {})
    return rows
