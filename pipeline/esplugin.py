"""newsmon's text-analysis plugin for Elasticsearch: build the zip with Maven, install it.

The sources are in docker/elasticsearch/analysis-plugin (a stable-API plugin with the
token filters newsmon_fold, newsmon_cjk_bigram and newsmon_cjk_word). A zip is built once
per version of those sources and cached beside the distribution it is installed into.
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
from pathlib import Path

from pipeline.config import PROJECT_ROOT

log = logging.getLogger(__name__)

PLUGIN_NAME = "newsmon-analysis"
SOURCES = PROJECT_ROOT / "docker" / "elasticsearch" / "analysis-plugin"
_MARKER = f"{PLUGIN_NAME}.sources-sha256"


class PluginError(Exception):
    """The analysis plugin cannot be built or installed."""


def source_digest(sources: Path = SOURCES) -> str:
    """SHA-256 over the plugin's pom, Java sources and descriptor files (names and contents)."""
    digest = hashlib.sha256()
    files = [sources / "pom.xml", *sorted(p for p in (sources / "src").rglob("*") if p.is_file())]
    for path in files:
        digest.update(str(path.relative_to(sources)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def build_zip(cache_dir: Path, sources: Path = SOURCES) -> Path:
    """The plugin zip for the current sources, built with Maven unless already cached."""
    digest = source_digest(sources)
    target = cache_dir / f"{PLUGIN_NAME}-{digest[:16]}.zip"
    if target.is_file():
        return target
    if not shutil.which("mvn"):
        raise PluginError(f"mvn not found: Maven is needed to build {sources}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="newsmon-plugin-") as build:
        cmd = ["mvn", "-q", "-B", "-f", str(sources / "pom.xml"), f"-Dnewsmon.build.dir={build}", "package"]
        log.info("building the analysis plugin: %s", " ".join(cmd))
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


def ensure_installed(home: Path, java_home: Path) -> None:
    """Install the plugin into the distribution at `home`, replacing an outdated one.

    Raises:
        PluginError: Maven or `elasticsearch-plugin` failed; the message says which.
    """
    digest = source_digest()
    marker = home / _MARKER
    if _installed_digest(marker) == digest:
        return
    with locked(home / f"{PLUGIN_NAME}.lock"):
        if _installed_digest(marker) == digest:
            return  # another process installed it while we waited
        archive = build_zip(home.parent / "plugin-cache")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ES_JAVA_HOME": str(java_home)}
        tool = str(home / "bin" / "elasticsearch-plugin")
        if (home / "plugins" / PLUGIN_NAME).exists():
            _run([tool, "remove", PLUGIN_NAME], env)
        _run([tool, "install", "--batch", archive.as_uri()], env)
        marker.write_text(digest)
        log.info("installed %s (%s) into %s", PLUGIN_NAME, digest[:12], home)


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
