"""A real Docker engine for the tests, started and stopped by the test session itself.

Nothing started by hand survives until CI runs, so the session starts its own ``dockerd`` (per
/work/shared/RECIPES.md: no bridge, no iptables, its own data and exec roots under a short /tmp
dir) and imports a tiny busybox image without a registry. Tests that need Docker take
``docker_url``, ``docker_client`` or ``run_container``; without root or ``dockerd`` they are
skipped loudly, and under ``CI=true`` they fail instead, because a skipped Docker test proves
nothing. A hung engine needs no dockerd: ``silent_docker`` is a unix socket that accepts and
never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from agent.dockerclient import DockerEngine

if TYPE_CHECKING:  # pragma: no cover
    import docker
    from docker.models.containers import Container

TEST_IMAGE = "lifeguard-test/busybox:latest"
TEST_LABEL = "lifeguard.test"
BUSYBOX = "/bin/busybox"  # from busybox-static: runs in an image with no libc
START_BOUND = 30.0  # seconds for dockerd to answer a ping
STOP_BOUND = 15.0  # seconds for dockerd to exit after SIGTERM

MS = 1_000_000  # docker-py healthcheck durations are nanoseconds

# Runs forever, but exits at once on SIGTERM: busybox as PID 1 would otherwise ignore it, and
# every stop or restart would wait the full grace period.
SLEEP_FOREVER = ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]


def _unavailable(reason: str) -> None:
    """Skip loudly, or fail under CI, where a skipped Docker test is a failure."""
    message = f"DOCKER TESTS NOT RUN: {reason}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _find_dockerd() -> str | None:
    # /usr/sbin is not on every user's PATH.
    return shutil.which("dockerd") or shutil.which("dockerd", path="/usr/sbin:/usr/bin")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _engine_root() -> Path:
    """A short dir for the engine (unix socket paths are limited to 108 bytes).

    A pidfile left there by an engine that was killed is removed, since dockerd refuses to start
    over one. If the pidfile names a live process, that engine is not ours: leave it and its dir
    alone and use a fresh one.
    """
    root = Path(f"/tmp/lg-docker-{os.getpid()}")
    root.mkdir(mode=0o700, exist_ok=True)
    pidfile = root / "docker.pid"
    try:
        pid = int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        pidfile.unlink(missing_ok=True)
        return root
    if _pid_alive(pid):
        return Path(tempfile.mkdtemp(prefix=f"lg-docker-{os.getpid()}-", dir="/tmp"))
    pidfile.unlink(missing_ok=True)
    return root


def _log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no dockerd log)"


def _busybox_rootfs_tar() -> bytes:
    """A rootfs of /bin/busybox and its applet symlinks, as a tar stream for ``docker import``.

    ``busybox --install -s DIR`` would point every link at the host path of the binary; the image
    needs them at their standard places pointing at /bin/busybox, so they are laid out from
    ``busybox --list-full`` instead.
    """
    applets = subprocess.run(
        [BUSYBOX, "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for directory, mode in [
            ("bin", 0o755), ("sbin", 0o755), ("usr", 0o755), ("usr/bin", 0o755),
            ("usr/sbin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("var", 0o755),
            ("proc", 0o555), ("sys", 0o555), ("dev", 0o755),
        ]:  # fmt: skip
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add(BUSYBOX, arcname="bin/busybox")
        for applet in applets:
            if applet == "bin/busybox":
                continue
            info = tarfile.TarInfo(applet)
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, "/bin/busybox", 0o777
            tar.addfile(info)
    return buf.getvalue()


def _import_test_image(client: docker.DockerClient) -> None:
    repository, tag = TEST_IMAGE.rsplit(":", 1)
    answer = client.api.import_image_from_data(
        _busybox_rootfs_tar(), repository=repository, tag=tag, changes=['CMD ["sh"]']
    )
    if '"error' in str(answer).lower():
        raise RuntimeError(f"docker import failed: {answer}")
    client.images.get(TEST_IMAGE)  # raises if the import silently did nothing


def _stop_dockerd(proc: subprocess.Popen[bytes], exec_root: Path) -> None:
    """SIGTERM our dockerd, wait, then SIGKILL it and its managed containerd if it hangs."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_BOUND)
            return
        except subprocess.TimeoutExpired:
            pass
    # dockerd started its own containerd; once dockerd is killed nothing else would stop it.
    containerd_pidfile = exec_root / "containerd" / "containerd.pid"
    with contextlib.suppress(OSError, ValueError):
        os.kill(int(containerd_pidfile.read_text().strip()), signal.SIGKILL)
    if proc.poll() is None:
        proc.kill()
        proc.wait(STOP_BOUND)


def _unmount_under(root: Path) -> None:
    """Lazily unmount anything a killed engine left mounted under our dir, so it can be removed."""
    prefix = str(root) + "/"
    try:
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        return
    for mountpoint in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
        subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)


class Engine:
    """One ``dockerd`` with its socket, data and exec roots under ``root``; started and stopped
    as often as a test likes (a restart keeps its data: containers, images)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.socket_path, self.pidfile, self.log = root / "docker.sock", root / "docker.pid", root / "dockerd.log"
        self.url = f"unix://{self.socket_path}"
        self.proc: subprocess.Popen[bytes] | None = None

    def client(self, timeout: int = 10) -> docker.DockerClient:
        import docker

        return docker.DockerClient(base_url=self.url, version="auto", timeout=timeout)

    def start(self) -> None:
        """Start dockerd and wait until it answers a ping; skip (or fail under CI) if it cannot."""
        dockerd = _find_dockerd()
        if dockerd is None:
            _unavailable("dockerd is not installed (apt-get install -y docker.io busybox-static)")
        if not os.path.exists(BUSYBOX):
            _unavailable(f"{BUSYBOX} is missing (apt-get install -y busybox-static)")
        import docker

        # fmt: off
        command = [
            dockerd, "--host", self.url, "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "exec"), "--pidfile", str(self.pidfile),
            "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
        ]
        # fmt: on
        with self.log.open("ab") as log_file:
            # Own session: a Ctrl-C meant for pytest must not kill the engine before teardown runs.
            self.proc = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_BOUND
        while True:
            if self.proc.poll() is not None:
                _unavailable(
                    f"dockerd exited with code {self.proc.returncode} at start; its log:\n" + _log_tail(self.log)
                )
            try:
                client = self.client()  # version="auto" asks the engine already
                try:
                    client.ping()
                    return
                finally:
                    client.close()
            except docker.errors.DockerException:
                pass
            if time.monotonic() > deadline:
                _unavailable(
                    f"dockerd did not answer on {self.url} within {START_BOUND:g}s; its log:\n" + _log_tail(self.log)
                )
            time.sleep(0.1)

    def stop(self, *, remove_containers: bool = False) -> None:
        """Stop dockerd (SIGTERM, then SIGKILL if it hangs); first remove every container if asked."""
        if self.proc is None:
            return
        if remove_containers and self.proc.poll() is None:
            import docker

            # Every container on this engine is one the tests created. An engine that does not
            # answer (say, still starting) keeps none worth removing, and must still be stopped.
            with contextlib.suppress(docker.errors.DockerException):
                client = self.client()
                try:
                    for container in client.containers.list(all=True):
                        with contextlib.suppress(docker.errors.DockerException):
                            container.remove(force=True)
                finally:
                    client.close()
        _stop_dockerd(self.proc, self.root / "exec")
        self.proc = None


@pytest.fixture(scope="session")
def docker_url() -> Iterator[str]:
    """``unix://…`` of a dockerd started for this session, with ``TEST_IMAGE`` imported."""
    if os.geteuid() != 0:
        _unavailable("the tests are not running as root, and dockerd needs root")
    root = _engine_root()
    engine = Engine(root)
    try:
        engine.start()
        client = engine.client()
        try:
            _import_test_image(client)
        finally:
            client.close()
        yield engine.url
    finally:
        engine.stop(remove_containers=True)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def docker_client(docker_url: str) -> Iterator[docker.DockerClient]:
    """A docker-py client for the session's engine, for test set-up and assertions."""
    import docker

    client = docker.DockerClient(base_url=docker_url, version="auto", timeout=30)
    yield client
    client.close()


@pytest.fixture
async def docker_engine(docker_url: str) -> AsyncIterator[DockerEngine]:
    """The agent's own ``DockerEngine`` on the session's engine; closed after the test."""
    engine = DockerEngine(docker_url, timeout=10.0)
    yield engine
    await engine.close()


def unique(prefix: str) -> str:
    """A container name no other test uses: ``lg-<prefix>-<8 hex>``."""
    return f"lg-{prefix}-{uuid.uuid4().hex[:8]}"


RunContainer = Callable[..., "Container"]


@pytest.fixture
def run_container(docker_client: docker.DockerClient) -> Iterator[RunContainer]:
    """Factory: run ``TEST_IMAGE`` detached on the host network; removed after the test.

    ``healthcheck`` is docker-py's dict (``test``, and ``interval``/``timeout``/``start_period``
    in nanoseconds, ``retries``).
    """
    import docker

    created: list[Container] = []

    def run(
        name: str,
        command: list[str] | str | None = None,
        environment: dict[str, str] | None = None,
        healthcheck: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> Container:
        container = docker_client.containers.run(
            TEST_IMAGE,
            command if command is not None else SLEEP_FOREVER,
            name=name,
            detach=True,
            network_mode="host",
            labels={TEST_LABEL: "1"},
            environment=environment,
            healthcheck=healthcheck,
            **kwargs,
        )
        created.append(container)
        return container

    yield run
    for container in created:
        # Force removal kills at once: no stop grace period for a PID 1 that ignores SIGTERM.
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


class SilentDocker:
    """A unix socket that accepts connections and never answers: a hung Docker engine."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lg-docker-", dir="/tmp"))  # short: unix paths are limited
        self.path = self.dir / "docker.sock"
        self.connected = asyncio.Event()
        self._server: asyncio.AbstractServer | None = None
        self._held: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    async def _accept(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.append(writer)
        self.connected.set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._accept, path=str(self.path))

    async def __aenter__(self) -> SilentDocker:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Hang up on every client (a call stuck on us ends now) and remove the socket."""
        for writer in self._held:
            writer.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
async def silent_docker() -> AsyncIterator[SilentDocker]:
    """A hung Docker engine at ``silent_docker.url``; needs neither root nor dockerd."""
    async with SilentDocker() as docker:
        yield docker
