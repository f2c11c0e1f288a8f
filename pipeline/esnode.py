"""The embedded Elasticsearch node: install from Maven Central, start, stop.

Used when NEWSMON_ES_URL is unset, and by the test suite; newsmon's plugins
(pipeline/esplugin.py) are installed into it. The integ-test zip has no
bundled JDK and refuses to run as root, so the node runs on the machine's
Java 17+ and, under root, as the unprivileged account ``nobody``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from pipeline.config import PROJECT_ROOT, ConfigError, Settings, is_root
from pipeline.esplugin import PluginError, ensure_installed, locked, plugins_digest

log = logging.getLogger(__name__)

ES_VERSION = "8.19.21"
MAVEN_ARTIFACT = f"org.elasticsearch.distribution.integ-test-zip:elasticsearch:{ES_VERSION}:zip"
MAVEN_ZIP = (
    Path.home()
    / ".m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch"
    / ES_VERSION
    / f"elasticsearch-{ES_VERSION}.zip"
)
RUN_AS = "nobody"
START_TIMEOUT_S = 300.0  # a loaded 2-core machine (CI, a shared dev box) needs well over 2 minutes


class NodeError(Exception):
    """The embedded node cannot be installed, started or reached."""


@dataclass(frozen=True)
class FileRealm:
    """Security on, with the users and roles of these files; with the `.security` index
    (whose analysis newsmon-security-index-analysis provides) the native realm, the roles
    API and API keys work too."""

    users: list[tuple[str, str, str]]  # (name, password, role); the first one probes health
    roles_yml: str = ""


@dataclass(frozen=True)
class NodeInfo:
    pid: int
    url: str


def node_root(settings: Settings) -> Path:
    """Folder holding the unpacked distribution, config, data and logs.

    Under root the node runs as ``nobody``, which cannot enter a checkout under
    /root or a mode-700 temp folder, so the node lives under the system temp dir,
    keyed by the checkout; otherwise it lives in the git-ignored ``var/``.
    """
    if is_root():
        key = hashlib.sha256(str(PROJECT_ROOT).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"newsmon-es-{key}"
    return settings.var_dir / "es"


def java_home() -> Path:
    """ES_JAVA_HOME, else JAVA_HOME, else `java` on PATH; must be Java 17 or newer."""
    candidates: list[tuple[str, Path]] = []
    for var in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            candidates.append((var, Path(os.environ[var])))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(("PATH", Path(on_path).resolve().parent.parent))
    if not candidates:
        raise NodeError("no Java found: set ES_JAVA_HOME or JAVA_HOME, or put java 17+ on PATH")
    seen = []
    for origin, home in candidates:
        major = _java_major(home / "bin" / "java")
        if major is not None and major >= 17:
            return home
        seen.append(f"{origin}={home} (version {major or 'unknown'})")
    raise NodeError("Elasticsearch needs Java 17 or newer; found only: " + ", ".join(seen))


def _java_major(java: Path) -> int | None:
    if not java.is_file():
        return None
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def ensure_distribution(settings: Settings) -> Path:
    """Return an unpacked Elasticsearch home, downloading and unpacking it once."""
    if settings.es_dist and settings.es_dist.is_dir():
        return settings.es_dist
    home = node_root(settings) / f"elasticsearch-{ES_VERSION}"
    if (home / "bin" / "elasticsearch").is_file():
        return home
    zip_path = settings.es_dist or _maven_zip()
    if not zip_path.is_file():
        raise NodeError(f"NEWSMON_ES_DIST={zip_path} is neither a zip nor an unpacked home")
    home.parent.mkdir(parents=True, exist_ok=True)
    with locked(home.parent / "unpack.lock"):
        if not (home / "bin" / "elasticsearch").is_file():  # another process may have unpacked it meanwhile
            _unpack(zip_path, home)
    return home


def _unpack(zip_path: Path, home: Path) -> None:
    log.info("unpacking %s into %s", zip_path, home.parent)
    staging = Path(tempfile.mkdtemp(dir=home.parent))
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(staging)
        for entry in staging.rglob("*"):
            # zipfile drops the exec bits the launcher scripts need.
            if entry.is_file() and entry.parent.name == "bin":
                entry.chmod(0o755)
        (staging / f"elasticsearch-{ES_VERSION}").rename(home)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _maven_zip() -> Path:
    if not MAVEN_ZIP.is_file():
        if not shutil.which("mvn"):
            raise NodeError("mvn not found: install Maven or set NEWSMON_ES_DIST to the zip")
        log.info("downloading %s with Maven", MAVEN_ARTIFACT)
        cmd = ["mvn", "-q", "dependency:get", f"-Dartifact={MAVEN_ARTIFACT}", "-Dtransitive=false"]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise NodeError(f"mvn dependency:get {MAVEN_ARTIFACT} failed: {done.stdout[-500:]}")
    _verify_sha1(MAVEN_ZIP)
    return MAVEN_ZIP


def _verify_sha1(zip_path: Path) -> None:
    sha_file = zip_path.with_name(zip_path.name + ".sha1")
    if not sha_file.is_file():
        raise NodeError(f"{sha_file} missing: cannot check {zip_path}")
    expected = sha_file.read_text().split()[0].strip().lower()
    digest = hashlib.sha1()  # noqa: S324 - Maven publishes SHA-1 checksums
    with zip_path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        zip_path.unlink()
        raise NodeError(f"checksum mismatch for {zip_path}; deleted it, run again to re-download")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class EmbeddedNode:
    """One single-node cluster with its own config, data and logs.

    ``instance`` (NEWSMON_ES_INSTANCE unless given) separates nodes that share a
    distribution (the default node used by `make run`, and a throwaway one per test
    session). ``security`` turns the
    security module on: how the tests check the project's roles on the real node.
    """

    def __init__(self, settings: Settings, instance: str | None = None, security: FileRealm | None = None) -> None:
        self.settings = settings
        self.dir = node_root(settings) / (instance or settings.es_instance)
        # One start or stop of this node at a time: a second `newsmon es start` waits, then finds the node.
        self.lock_file = self.dir.with_name(f"{self.dir.name}.lock")
        self.state_file = self.dir / "node.json"
        self.security = security
        self.probe_user = security.users[0][:2] if security else None

    def info(self) -> NodeInfo | None:
        """The running node recorded in node.json, or None."""
        try:
            raw = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        info = NodeInfo(pid=int(raw["pid"]), url=str(raw["url"]))
        return info if _alive(info.pid) and _healthy(info.url, self.probe_user) else None

    def start(self) -> NodeInfo:
        """The running node, started first when it is not running (or runs outdated plugins)."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.lock_file):
            running = self.info()
            if running and self._plugin_loaded() == plugins_digest():
                return running
            if running:
                # The templates may use filters the loaded plugins lack: restart with the new ones.
                log.info("restarting the node at %s: its plugins changed", running.url)
                self._stop()
            return self._launch()

    def _launch(self) -> NodeInfo:
        home = ensure_distribution(self.settings)
        java = java_home()
        try:
            # The index templates' analyzers need newsmon's token filters, `.security` its own.
            ensure_installed(home, java)
        except PluginError as exc:
            raise NodeError(f"plugin: {exc}") from exc
        conf = self._write_config(home)
        http_port = free_port()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ES_JAVA_HOME": str(java),
            "ES_PATH_CONF": str(conf),
            "ES_TMPDIR": str(self.dir / "tmp"),
            "ES_JAVA_OPTS": f"-Xms{self.settings.es_heap} -Xmx{self.settings.es_heap}",
        }
        if self.security:
            self._write_file_realm(home, env, self.security)
        cmd = [
            str(home / "bin" / "elasticsearch"),
            "-E",
            f"http.port={http_port}",
            "-E",
            f"transport.port={free_port()}",
        ]
        self._hand_over_to_runner(home)
        console = (self.dir / "logs" / "console.log").open("ab")
        kwargs: dict[str, object] = {}
        if is_root():
            account = pwd.getpwnam(RUN_AS)
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=self.dir,
            **kwargs,  # type: ignore[call-overload]
        )
        url = f"http://127.0.0.1:{http_port}"
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise NodeError(f"Elasticsearch exited with {proc.returncode}; see {console.name}")
            if _healthy(url, self.probe_user):
                info = NodeInfo(pid=proc.pid, url=url)
                state = {"pid": proc.pid, "url": url, "plugin": plugins_digest()}
                self.state_file.write_text(json.dumps(state))
                log.info("elasticsearch %s up at %s (pid %s)", ES_VERSION, url, proc.pid)
                return info
            time.sleep(0.5)
        _terminate(proc.pid)
        raise NodeError(f"Elasticsearch did not answer within {START_TIMEOUT_S:.0f}s; see {console.name}")

    def _plugin_loaded(self) -> str | None:
        """Digest of the plugin sources the running node was started with."""
        try:
            return json.loads(self.state_file.read_text()).get("plugin")
        except (FileNotFoundError, ValueError):
            return None

    def stop(self) -> bool:
        """Stop the recorded node; True when one was running."""
        if not self.dir.parent.is_dir():
            return False
        with locked(self.lock_file):
            return self._stop()

    def _stop(self) -> bool:
        try:
            raw = json.loads(self.state_file.read_text())
        except (FileNotFoundError, ValueError):
            return False
        self.state_file.unlink(missing_ok=True)
        pid = int(raw["pid"])
        if not _alive(pid):
            return False
        _terminate(pid)
        return True

    def _write_config(self, home: Path) -> Path:
        conf = self.dir / "config"
        if not conf.exists():
            shutil.copytree(home / "config", conf)
        for sub in ("data", "logs", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (conf / "elasticsearch.yml").write_text(
            "\n".join(
                [
                    "cluster.name: newsmon",
                    "node.name: newsmon-embedded",
                    "discovery.type: single-node",
                    "network.host: 127.0.0.1",
                    f"path.data: {self.dir / 'data'}",
                    f"path.logs: {self.dir / 'logs'}",
                    f"xpack.security.enabled: {'true' if self.security else 'false'}",
                    # A nearly full dev disk must not turn every index read-only.
                    "cluster.routing.allocation.disk.threshold_enabled: false",
                    "action.destructive_requires_name: false",
                    "",
                ]
            )
        )
        # GC logs into the node's own folder rather than the distribution's.
        jvm = conf / "jvm.options"
        jvm.write_text(jvm.read_text().replace("file=gc.log", f"file={self.dir / 'logs' / 'gc.log'}"))
        return conf

    def _write_file_realm(self, home: Path, env: dict[str, str], realm: FileRealm) -> None:
        conf = Path(env["ES_PATH_CONF"])
        (conf / "roles.yml").write_text(realm.roles_yml, encoding="utf-8")
        users = conf / "users"
        known = {line.partition(":")[0] for line in users.read_text().splitlines()} if users.is_file() else set()
        for name, password, role in realm.users:
            if name in known:
                continue
            cmd = [str(home / "bin" / "elasticsearch-users"), "useradd", name, "-p", password, "-r", role]
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise NodeError(f"elasticsearch-users useradd {name} failed: {(done.stdout + done.stderr)[-500:]}")

    def _hand_over_to_runner(self, home: Path) -> None:
        """Under root, give the unprivileged account the node's folders, and only those."""
        if not is_root():
            return
        account = pwd.getpwnam(RUN_AS)
        for path in [self.dir, *self.dir.rglob("*")]:
            os.lchown(path, account.pw_uid, account.pw_gid)
        # The distribution stays root's; the account only needs to read it.
        for path in (self.dir.parent, home):
            path.chmod(0o755)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _healthy(url: str, user: tuple[str, str] | None = None) -> bool:
    # The integ-test zip has no `GET /`, so health is the liveness probe.
    try:
        response = httpx.get(f"{url}/_cluster/health", timeout=2.0, auth=user)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("status") in {"green", "yellow"}


def _terminate(pid: int, grace_s: float = 30.0) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            waited = 0
        if waited == pid or not _alive(pid):
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def default_node_url(settings: Settings) -> str:
    """URL of the embedded default node, starting it when it is not running."""
    if settings.es_url:
        raise ConfigError("NEWSMON_ES_URL is set; the embedded node is not used")
    return EmbeddedNode(settings).start().url
