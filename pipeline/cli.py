"""`newsmon`: the command line. Thin: each command calls one pipeline function."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from pipeline.config import ConfigError, Settings, load_settings
from pipeline.logs import setup_logging
from pipeline.models import Extraction, Verdict

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
es_app = typer.Typer(no_args_is_help=True, help="The embedded Elasticsearch node.")
seeds_app = typer.Typer(no_args_is_help=True, help="The seed articles.")
config_app = typer.Typer(no_args_is_help=True, help="Settings.")
alerts_app = typer.Typer(no_args_is_help=True, help="Alert emails.")
api_key_app = typer.Typer(no_args_is_help=True, help="The pipeline's least-privilege API key.")
feeds_app = typer.Typer(no_args_is_help=True, help="The sources of config/feeds.yaml.")
watchlist_app = typer.Typer(no_args_is_help=True, help="The watchlist (config/watchlist.yaml).")
pool_app = typer.Typer(no_args_is_help=True, help="The warm extraction pool that runs share.")
app.add_typer(es_app, name="es")
app.add_typer(pool_app, name="pool")
app.add_typer(seeds_app, name="seeds")
app.add_typer(config_app, name="config")
app.add_typer(alerts_app, name="alerts")
app.add_typer(api_key_app, name="api-key")
airflow_app = typer.Typer(no_args_is_help=True, help="Airflow on this machine, on loopback (`make airflow`).")
app.add_typer(airflow_app, name="airflow")
app.add_typer(feeds_app, name="feeds")
app.add_typer(watchlist_app, name="watchlist")

out = Console()
err = Console(stderr=True)

ConfigDir = Annotated[
    Path | None,
    typer.Option("--config-dir", envvar="NEWSMON_CONFIG_DIR", help="Folder with feeds, watchlist, alert rules."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def command(config_dir: Path | None) -> Iterator[Settings]:
    """Settings for one command; known failures become one line on stderr and exit 1."""
    setup_logging()
    try:
        yield load_settings(config_dir=config_dir)
    except Exception as exc:
        if isinstance(exc, _reported_errors()):
            err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        from pipeline.es import transient

        if not transient(exc):
            raise
        # The node went away mid-command: nothing was marked done, so a re-run completes the work.
        err.print(
            f"[red]error:[/red] Elasticsearch failed during the command ({type(exc).__name__}); "
            "run it again once the cluster is back: nothing is lost",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def _reported_errors() -> tuple[type[Exception], ...]:
    """Failures a command reports in one line. Imported when one is raised, not at start-up: the
    Elasticsearch client and the tagger's modules would cost every command (`run --once` included)
    about 0.35 s of CPU before it starts."""
    from pipeline.es import StoreUnavailable
    from pipeline.esnode import NodeError
    from pipeline.feedback import FeedbackError
    from pipeline.setup import SetupError
    from pipeline.tagpool import RetagStalled

    return (ConfigError, StoreUnavailable, NodeError, SetupError, FeedbackError, RetagStalled)


@es_app.command("start")
def es_start(config_dir: ConfigDir = None) -> None:
    """Install (once) and start the embedded node."""
    from pipeline.esnode import EmbeddedNode

    with command(config_dir) as settings:
        info = EmbeddedNode(settings).start()
        out.print(f"Elasticsearch running at {info.url} (pid {info.pid})")


@es_app.command("status")
def es_status(config_dir: ConfigDir = None) -> None:
    """Say whether the embedded node runs; exit 1 when it does not."""
    from pipeline.esnode import EmbeddedNode

    with command(config_dir) as settings:
        info = EmbeddedNode(settings).info()
        if not info:
            out.print("Elasticsearch (embedded) is not running")
            raise typer.Exit(1)
        out.print(f"Elasticsearch running at {info.url} (pid {info.pid})")


@es_app.command("stop")
def es_stop(config_dir: ConfigDir = None) -> None:
    """Stop the embedded node."""
    from pipeline.esnode import EmbeddedNode

    with command(config_dir) as settings:
        stopped = EmbeddedNode(settings).stop()
        out.print("stopped" if stopped else "was not running")


@pool_app.command("status")
def pool_status(config_dir: ConfigDir = None) -> None:
    """Say whether a warm pool runs for these settings and what it does; exit 1 when none does."""
    from pipeline.warmpool import status

    with command(config_dir) as settings:
        found = status(settings)
        if found is None:
            out.print("no warm pool for these settings")
            raise typer.Exit(1)
        doing = (
            "serving a run" if found.serving else f"idle {found.idle_seconds:.0f} s of {found.keep_warm_seconds:.0f} s"
        )
        out.print(f"warm pool running (pid {found.pid}), runs served: {found.runs_served}, {doing}")


@pool_app.command("stop")
def pool_stop(config_dir: ConfigDir = None) -> None:
    """End the warm pool of these settings (after the run it serves, if any)."""
    from pipeline.warmpool import stop

    with command(config_dir) as settings:
        out.print("asked to stop" if stop(settings) else "was not running")


AirflowHome = Annotated[Path | None, typer.Option("--home", help="AIRFLOW_HOME; default NEWSMON_VAR_DIR/airflow.")]


@airflow_app.command("start")
def airflow_start(
    port: Annotated[int, typer.Option("--port", help="Port of the UI and API, on 127.0.0.1.")] = 8080,
    home: AirflowHome = None,
    config_dir: ConfigDir = None,
) -> None:
    """Run the scheduler, DAG processor, triggerer and API server (and the embedded node) until Ctrl-C or `stop`."""
    from pipeline.standalone import Layout, Supervisor

    with command(config_dir) as settings:
        layout = Layout(home or settings.var_dir / "airflow", port)
        passwords = layout.home / "simple_auth_manager_passwords.json.generated"
        out.print(f"Airflow UI: http://127.0.0.1:{port}  user: admin  password: in {passwords}")
        code = Supervisor(settings, layout).run()
        out.print("airflow stopped: every component and task process ended")
        if code:
            raise typer.Exit(code)


@airflow_app.command("stop")
def airflow_stop(home: AirflowHome = None, config_dir: ConfigDir = None) -> None:
    """Stop what `newsmon airflow start` runs from this home, and wait until every process has ended."""
    from pipeline.standalone import Layout, stop

    with command(config_dir) as settings:
        stopped = stop(Layout(home or settings.var_dir / "airflow", 0))
        out.print("stopped" if stopped else "was not running")


@app.command("setup")
def setup_cmd(
    check: Annotated[
        bool, typer.Option("--check", help="Only say what would change; exit 1 if anything would.")
    ] = False,
    seeds: Annotated[bool, typer.Option("--seeds/--no-seeds", help="Load the seed articles too.")] = True,
    roles: Annotated[bool, typer.Option("--roles", help="Install config/security/roles.json (superuser).")] = False,
    config_dir: ConfigDir = None,
) -> None:
    """Install the index templates, create or migrate the indices, load the seeds (privileged; repeatable)."""
    from pipeline.es import Indices, connect
    from pipeline.setup import pending, setup_indices

    with command(config_dir) as settings:
        es = connect(settings)
        if check:
            todo = pending(es, settings)
            for line in todo:
                out.print(line, highlight=False)
            if todo:
                raise typer.Exit(1)
            out.print("indices are up to date with config/templates")
            return
        if roles:
            from pipeline.security import put_roles

            out.print(f"roles: {', '.join(put_roles(es, settings))}")
        report = setup_indices(es, settings)
        for name, change in report.changes.items():
            out.print(f"{name}: {change.value}", highlight=False)
        if report.copied:
            out.print(f"{report.copied} documents written again under the new mapping")
        if report.migrated:
            out.print(f"{report.migrated} stored documents rewritten in the current shape")
        if seeds:
            from pipeline.seeds import load_seeds
            from pipeline.tag import get_tagger

            count = load_seeds(es, Indices(settings.index_prefix), get_tagger(settings))
            out.print(f"{count} seed articles indexed")


@api_key_app.command("create")
def api_key_create(
    out_file: Annotated[Path | None, typer.Option("--out", help="Write the key to this file (mode 640).")] = None,
    name: Annotated[str, typer.Option("--name", help="Key name; older keys of this name are invalidated.")] = (
        "newsmon-pipeline"
    ),
    config_dir: ConfigDir = None,
) -> None:
    """Create the API key the runtime uses: read/write on the project's indices, nothing else."""
    from pipeline.es import connect
    from pipeline.security import create_pipeline_key, write_secret

    with command(config_dir) as settings:
        key = create_pipeline_key(connect(settings), settings, name)
        if out_file is None:
            print(key)
            return
        write_secret(out_file, key)
        out.print(f"API key {name} written to {out_file} (use NEWSMON_ES_API_KEY_FILE={out_file})")


@seeds_app.command("load")
def seeds_load(config_dir: ConfigDir = None) -> None:
    """Index the seed articles (tagged); loading twice changes nothing."""
    from pipeline.es import open_store
    from pipeline.seeds import load_seeds
    from pipeline.tag import get_tagger

    with command(config_dir) as settings:
        es, indices = open_store(settings)
        count = load_seeds(es, indices, get_tagger(settings))
        out.print(f"{count} seed articles indexed into {indices.articles}")


@app.command("search")
def search_cmd(
    query: str,
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 10,
    config_dir: ConfigDir = None,
) -> None:
    """Search articles; traditional and simplified forms find each other."""
    from pipeline.es import open_store
    from pipeline.search import search
    from pipeline.watchlist import load_watchlist

    with command(config_dir) as settings:
        es, indices = open_store(settings)
        # Elasticsearch analyses the query; no tagger (jieba) is loaded for a search.
        watchlist = load_watchlist(settings.config_file("watchlist.yaml"))
        hits = search(es, indices, watchlist, query, limit)
        if as_json:
            print(json.dumps([h.as_json() for h in hits], ensure_ascii=False, indent=1))
            return
        table = Table(title=f"{len(hits)} hits for {escape(query)}")
        for column in ("title", "source", "published", "matched", "snippet"):
            table.add_column(column)
        for h in hits:
            snippet = escape(h.snippets[0] if h.snippets else "")
            snippet = snippet.replace("<em>", "[bold yellow]").replace("</em>", "[/]")
            table.add_row(
                escape(h.title),
                escape(h.source.get("name", "")),
                (h.published_at or "")[:16],
                escape(", ".join(h.matched)),
                snippet,
            )
        out.print(table)


@app.command("stories")
def stories_cmd(
    since: Annotated[str, typer.Option("--since", help="Stories that started this recently: 7d, 12h, 2w.")] = "7d",
    as_json: AsJson = False,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    config_dir: ConfigDir = None,
) -> None:
    """One row per story, largest first: its lead's title, first seen, size and languages."""
    from datetime import UTC, datetime

    from pipeline.es import open_store
    from pipeline.storyindex import list_stories
    from pipeline.suggest import parse_since

    with command(config_dir) as settings:
        span = parse_since(since)
        es, indices = open_store(settings)
        rows = list_stories(es, indices, span, datetime.now(UTC), limit)
        if as_json:
            print(json.dumps([r.as_json() for r in rows], ensure_ascii=False, indent=1))
            return
        table = Table(title=f"{len(rows)} stories since {escape(since)} ago")
        for column in ("lead", "outlet", "first seen", "size", "languages"):
            table.add_column(column)
        for r in rows:
            table.add_row(escape(r.title), escape(r.outlet), r.first_seen[:16], str(r.size), ", ".join(r.languages))
        out.print(table)


@app.command("retag")
def retag_cmd(
    names: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            help="Only articles containing this name: after adding, editing or removing aliases, "
            "give each name added or removed (an edit is both). Repeatable.",
        ),
    ] = None,
    config_dir: ConfigDir = None,
) -> None:
    """Re-apply the current watchlist to indexed documents, without re-fetching."""
    from rich.progress import Progress

    from pipeline.es import open_store
    from pipeline.index import retag
    from pipeline.tag import get_tagger

    with command(config_dir) as settings:
        es, indices = open_store(settings)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("retag", total=None)
            counts = retag(
                es,
                indices,
                get_tagger(settings),
                names or (),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
                workers=settings.workers,
                wall_timeout=settings.retag_wall_timeout,
            )
        unchanged = f"; {counts['unchanged']} read, their tags unchanged" if counts["unchanged"] else ""
        out.print(f"{counts['retagged']} of {counts['seen']} documents retagged{unchanged}")


@app.command("label")
def label_cmd(
    url: Annotated[str, typer.Argument(help="The article's URL, as indexed or as its feed gave it.")],
    verdict: Annotated[Verdict, typer.Argument(help="relevant or irrelevant.")],
    config_dir: ConfigDir = None,
) -> None:
    """Store an analyst's verdict on an indexed article (kept through retag; labelling twice changes nothing)."""
    from pipeline.es import open_store
    from pipeline.feedback import label_article

    with command(config_dir) as settings:
        es, indices = open_store(settings)
        outcome = label_article(es, indices, url, verdict)
        out.print(f"{escape(url)}: {verdict.value} ({outcome.value})", highlight=False)


@app.command("evaluate")
def evaluate_cmd(as_json: AsJson = False, config_dir: ConfigDir = None) -> None:
    """Precision and recall of the current rules on the labelled articles, and what caused each miss."""
    from dataclasses import asdict

    from pipeline.es import open_store
    from pipeline.feedback import evaluate
    from pipeline.tag import get_tagger

    with command(config_dir) as settings:
        es, indices = open_store(settings)
        result = evaluate(es, indices, get_tagger(settings))
        summary = {"labelled": result.labelled, "precision": result.precision, "recall": result.recall}
        if as_json:
            misses = [asdict(m) for m in result.misses]
            print(json.dumps(summary | dict(result.counts) | {"misses": misses}, ensure_ascii=False))
            return
        if not result.labelled:
            out.print("No labelled articles: label some with `newsmon label URL relevant|irrelevant`.")
            return
        shown = {k: "n/a" if v is None else f"{v:.3f}" for k, v in summary.items() if k != "labelled"}
        counts = ", ".join(f"{k} {result.counts[k]}" for k in ("tp", "fp", "fn", "tn"))
        figures = f"precision {shown['precision']}, recall {shown['recall']}"
        out.print(f"{result.labelled} labelled articles: {figures} ({counts})")
        for miss in result.misses:
            out.rule(f"{miss.mistake.value}: {escape(miss.title)}")
            out.print(miss.url, markup=False, highlight=False)
            for reason in miss.reasons:
                out.print(f"  {reason}", markup=False, highlight=False)


@app.command("poll")
def poll_cmd(
    feed: Annotated[list[str] | None, typer.Option("--feed", help="Only this feed (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--all", help="Poll feeds that are backed off or not due too.")] = False,
    config_dir: ConfigDir = None,
) -> None:
    """Poll feeds and queue their new entries; report counts."""
    from pipeline.es import open_store
    from pipeline.run import configured_feeds, poll_stage

    with command(config_dir) as settings:
        feeds = configured_feeds(settings, feed)
        es, indices = open_store(settings)
        counts = poll_stage(settings, es, indices, feeds, force=force or bool(feed))
        _report_feed_failures(counts)
        out.print(
            f"{counts['polled']} feeds polled, {counts['not_modified']} not modified, "
            f"{counts['failed']} failed, {counts['new']} new entries"
        )


@app.command("run")
def run_cmd(
    once: Annotated[bool, typer.Option("--once", help="One run, then exit.")] = False,
    config_dir: ConfigDir = None,
) -> None:
    """Poll → fetch → extract → tag → index → alert, with a progress bar and a summary."""
    if not once:
        err.print("only `newsmon run --once` exists; schedule repeated runs with Airflow (dags/)")
        raise typer.Exit(2)
    from pipeline.poolserver import EarlyForkserver

    with command(config_dir) as settings, EarlyForkserver(settings) as early:
        # The pool's forkserver imports the pipeline and builds what every worker needs while this
        # process imports the run's stages and polls; workers fork from it once there is work.
        from rich.progress import Progress

        from pipeline.es import open_store
        from pipeline.lifecycle import process_entries
        from pipeline.run import alert_stage, configured_feeds, poll_stage

        feeds = configured_feeds(settings)
        es, indices = open_store(settings)
        polled = poll_stage(settings, es, indices, feeds)
        _report_feed_failures(polled)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("articles", total=None)
            processed = process_entries(
                settings,
                es,
                indices,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
        early.used = processed["queued"] > 0
        alerted = alert_stage(settings, es, indices)
        summary = Table(title="newsmon run")
        summary.add_column("stage")
        summary.add_column("counts")
        summary.add_row("poll", _counts(polled, "polled", "not_modified", "skipped", "failed", "new"))
        summary.add_row("fetch", _counts(processed, "queued", "fetched", "fetch_failed"))
        summary.add_row("extract", _counts(processed, "extracted", "fallback", "failed"))
        summary.add_row("index", _counts(processed, "indexed"))
        summary.add_row("alert", _counts(alerted, "alerted", "emails", "failed"))
        out.print(summary)
        _report_alerts(alerted)


def _report_alerts(alerted: Mapping[str, Any]) -> None:
    """Where alerts went, and one line per rule that failed (exit 1: it is sent by the next run)."""
    for where in alerted["delivered_to"]:
        out.print(f"alerts delivered to {where}")
    for error in alerted["errors"]:
        err.print(
            f"[red]alert not sent:[/red] {error} (it will be sent by the next run)", highlight=False, soft_wrap=True
        )
    if alerted["errors"]:
        raise typer.Exit(1)


def _report_feed_failures(polled: Mapping[str, Any]) -> None:
    """One line per failed feed, naming it, its URL and the reason."""
    for failure in polled["failures"]:
        err.print(f"[yellow]feed failed:[/yellow] {escape(str(failure))}", highlight=False, soft_wrap=True)


def _counts(counts: Mapping[str, object], *keys: str) -> str:
    return "  ".join(f"{k}={counts[k]}" for k in keys)


@feeds_app.command("discover")
def feeds_discover(
    url: Annotated[str, typer.Argument(help="A page of the site: its home page, or a news or press page.")],
    config_dir: ConfigDir = None,
) -> None:
    """Print the feeds and sitemaps a site advertises as feeds.yaml entries (checked by fetching each)."""
    from pipeline.fetch import FetchError
    from pipeline.sourcefinder import discover
    from pipeline.urls import UrlError

    with command(config_dir) as settings:
        try:
            found = discover(url, settings)
        except (FetchError, UrlError) as exc:
            raise ConfigError(f"cannot discover sources from {url}: {exc}") from None
        for line in found.rejected:
            err.print(f"skipped {escape(line)}", highlight=False, soft_wrap=True)
        if not found.found:
            err.print(f"[red]no feed, sitemap or article list found at {escape(url)}[/red]", highlight=False)
            raise typer.Exit(1)
        print("\n\n".join(f.yaml() for f in found.found))


def _print_results(results: Iterable[dict[str, Any]], as_json: bool, show: Callable[[dict[str, Any]], None]) -> None:
    """Each result as a JSON line or laid out by `show`; exit 1 once all are printed if any failed."""
    failed = False
    for result in results:
        failed |= result["status"] is Extraction.FAILED
        if as_json:
            print(json.dumps(result, ensure_ascii=False))
        else:
            show(result)
    if failed:
        raise typer.Exit(1)


@app.command("extract")
def extract_cmd(
    sources: Annotated[list[str], typer.Argument(help=".html or .html.gz files, or http(s) URLs.")],
    as_json: AsJson = False,
    config_dir: ConfigDir = None,
) -> None:
    """Print what the pipeline extracts from each page, without indexing."""
    from pipeline.inspect import extract_sources

    with command(config_dir) as settings:
        _print_results(extract_sources(settings, sources), as_json, _show_extracted)


def _show_failed(result: dict[str, Any]) -> None:
    """One line on stderr naming the source and why, whatever the terminal's width."""
    err.print(f"[red]{escape(result['source'])}:[/red] {escape(result['reason'])}", highlight=False, soft_wrap=True)


def _show_extracted(result: dict[str, Any]) -> None:
    if result["status"] is Extraction.FAILED:
        _show_failed(result)
        return
    out.rule(escape(result["source"]))
    out.print(f"[bold]{escape(result['title'])}[/bold]  ({result['status']}, {result['published_at']})")
    out.print(result["body"][:2000], markup=False, highlight=False)


@app.command("inspect")
def inspect_cmd(
    files: Annotated[list[str], typer.Argument(help=".html, .html.gz or plain-text files.")],
    as_json: AsJson = False,
    config_dir: ConfigDir = None,
) -> None:
    """Print extraction, tags and relevance for files, without indexing."""
    from pipeline.inspect import inspect_files

    with command(config_dir) as settings:
        _print_results(inspect_files(settings, files), as_json, _show_inspected)


def _show_inspected(result: dict[str, Any]) -> None:
    if result["status"] is Extraction.FAILED:
        _show_failed(result)
        return
    rel = result["relevance"]
    out.rule(escape(result["source"]))
    out.print(f"[bold]{escape(result['title'])}[/bold]")
    out.print(f"relevant: {rel['relevant']}  score: {rel['score']}  rules: {', '.join(rel['matched_rules']) or '-'}")
    for sentence in rel.get("evidence", []):
        out.print(f"  because: {sentence}", markup=False, highlight=False)
    for kind, ids in result["entities"].items():
        out.print(f"  {kind}: {', '.join(ids)}")
    out.print(f"  watch terms: {', '.join(result['watch_terms']) or '-'}")
    out.print(f"  keywords: {', '.join(result['keywords'])}", markup=False)
    if result["discovered"]:
        names = ", ".join(f"{d['name']} ({d['type']}, {d['count']})" for d in result["discovered"])
        out.print(f"  discovered: {names}", markup=False, highlight=False)


@watchlist_app.command("suggest")
def watchlist_suggest(
    since: Annotated[str, typer.Option("--since", help="Articles published this recently: 30d, 12h, 2w.")] = "30d",
    limit: Annotated[int, typer.Option("--limit", help="At most this many names.")] = 20,
    as_json: AsJson = False,
    config_dir: ConfigDir = None,
) -> None:
    """Names discovered in relevant articles that the watchlist lacks, most articles first."""
    from dataclasses import asdict

    from pipeline.es import open_store
    from pipeline.suggest import parse_since, suggest
    from pipeline.tag import get_tagger

    with command(config_dir) as settings:
        span = parse_since(since)
        es, indices = open_store(settings)
        found = suggest(es, indices, get_tagger(settings), span, limit)
        if as_json:
            for item in found:
                print(json.dumps(asdict(item) | {"yaml": item.watchlist_entry()}, ensure_ascii=False))
            return
        if not found:
            out.print(f"No names beyond the watchlist in relevant articles of the last {since}.")
            return
        table = Table("articles", "name", "type", "example")
        for item in found:
            table.add_row(str(item.articles), escape(item.name), item.type.value, escape(item.example))
        out.print(table)
        out.print("Ready to paste into config/watchlist.yaml under `entities:` (then `newsmon retag`):")
        for item in found:
            out.print(item.watchlist_entry(), markup=False, highlight=False)


@alerts_app.command("preview")
def alerts_preview(
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule.")] = None,
    config_dir: ConfigDir = None,
) -> None:
    """Render what would be sent now, without sending or recording anything."""
    from datetime import UTC, datetime

    from pipeline.alert import Alerter
    from pipeline.es import open_store
    from pipeline.mail import SmtpConfig
    from pipeline.watchlist import load_watchlist

    with command(config_dir) as settings:
        es, indices = open_store(settings)
        watchlist = load_watchlist(settings.config_file("watchlist.yaml"))
        alerter = Alerter(settings, es, indices, watchlist, SmtpConfig.from_settings(settings))
        for selected in [alerter.rule(rule)] if rule else alerter.rules:
            _, text = alerter.preview(selected, datetime.now(UTC))
            out.rule(f"{selected.name} ({selected.mode}) → {', '.join(selected.recipients)}")
            out.print(text or "nothing to send", markup=False, highlight=False)


@alerts_app.command("send")
def alerts_send(config_dir: ConfigDir = None) -> None:
    """Send the alerts that are due now (overlapping senders never double an email)."""
    from pipeline.es import open_store
    from pipeline.run import alert_stage

    with command(config_dir) as settings:
        es, indices = open_store(settings)
        alerted = alert_stage(settings, es, indices)
        out.print(_counts(alerted, "alerted", "emails", "held", "failed"))
        _report_alerts(alerted)


@config_app.command("show")
def config_show(config_dir: ConfigDir = None) -> None:
    """Print the effective settings, secrets masked."""
    with command(config_dir) as settings:
        print(json.dumps(settings.masked(), indent=1, ensure_ascii=False))
