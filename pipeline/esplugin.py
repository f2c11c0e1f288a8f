"""newsmon's Elasticsearch plugins for the embedded node: build each zip with Maven, install it.

- docker/elasticsearch/analysis-plugin: the token filters newsmon_fold, newsmon_cjk_bigram and
  newsmon_cjk_word that the index templates use (the compose image carries it too);
- docker/elasticsearch/security-index-analysis-plugin: pattern_capture, uax_url_email and
  unique, which the `.security` index settings name and the integ-test zip lacks (it has no
  analysis-common module); without them the node cannot create that index, so there is no
  native realm and no API key. The official image has analysis-common and never gets it.

Both are stable-API plugins. A zip is built once per version of its sources and cached beside
the distribution it is installed into.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import PROJECT_ROOT

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plugin:
    name: str
    sources: Path


ANALYSIS = Plugin("newsmon-analysis", PROJECT_ROOT / "docker" / "elasticsearch" / "analysis-plugin")
SECURITY_INDEX_ANALYSIS = Plugin(
    "newsmon-security-index-analysis", PROJECT_ROOT / "docker" / "elasticsearch" / "security-index-analysis-plugin"
)
EMBEDDED_PLUGINS = (ANALYSIS, SECURITY_INDEX_ANALYSIS)


class PluginError(Exception):
    """The analysis plugin cannot be built or installed."""


def source_digest(sources: Path) -> str:
    """SHA-256 over the plugin's pom, Java sources and descriptor files (names and contents)."""
    digest = hashlib.sha256()
    files = [sources / "pom.xml", *sorted(p for p in (sources / "src").rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(sources)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def plugins_digest(plugins: tuple[Plugin, ...] = EMBEDDED_PLUGINS) -> str:
    """One digest over the sources of every plugin the embedded node carries."""
    return hashlib.sha256("".join(source_digest(p.sources) for p in plugins).encode()).hexdigest()


def build_zip(cache_dir: Path, plugin: Plugin) -> Path:
    """The plugin zip for the current sources, built with Maven unless already cached."""
    sources = plugin.sources
    digest = source_digest(sources)
    target = cache_dir / f"{plugin.name}-{digest[:16]}.zip"
    if target.is_file():
        return target
    if not shutil.which("mvn"):
        raise PluginError(f"mvn not found: Maven is needed to build {sources}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="newsmon-plugin-") as build:
        cmd = ["mvn", "-q", "-B", "-f", str(sources / "pom.xml"), f"-Dnewsmon.build.dir={build}", "package"]
        log.info("building %s: %s", plugin.name, " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PluginError(f"building {sources} failed: {(done.stdout + done.stderr)[-1500:]}")
        jars = [*Path(build).glob("*.jar"), *Path(build, "lib").glob("*.jar")]
        staging = target.with_suffix(".part")
        # Plugin zips hold their files at the root: jars, descriptor, named components.
        with zipfile.ZipFile(staging, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in [*jars, *sorted((sources / "src" / "main" / "plugin").iterdir())]:
                archive.write(path, path.name)
        staging.replace(target)
    return target


def ensure_installed(home: Path, java_home: Path, plugins: tuple[Plugin, ...] = EMBEDDED_PLUGINS) -> None:
    """Install the plugins into the distribution at `home`, replacing outdated ones.

    Raises:
        PluginError: Maven or `elasticsearch-plugin` failed; the message says which.
    """
    for plugin in plugins:
        _ensure_one(home, java_home, plugin)


def _ensure_one(home: Path, java_home: Path, plugin: Plugin) -> None:
    digest = source_digest(plugin.sources)
    marker = home / f"{plugin.name}.sources-sha256"
    if _installed_digest(marker) == digest:
        return
    with locked(home / f"{plugin.name}.lock"):
        if _installed_digest(marker) == digest:
            return  # another process installed it while we waited
        archive = build_zip(home.parent / "plugin-cache", plugin)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ES_JAVA_HOME": str(java_home)}
        tool = str(home / "bin" / "elasticsearch-plugin")
        if (home / "plugins" / plugin.name).exists():
            _run([tool, "remove", plugin.name], env)
        _run([tool, "install", "--batch", archive.as_uri()], env)
        marker.write_text(digest)
        log.info("installed %s (%s) into %s", plugin.name, digest[:12], home)


def _installed_digest(marker: Path) -> str | None:
    try:
        return marker.read_text().strip()
    except FileNotFoundError:
        return None


def _run(cmd: list[str], env: dict[str, str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise PluginError(f"{' '.join(cmd)} failed: {(done.stdout + done.stderr)[-1000:]}")


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created if absent) against other processes."""
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
