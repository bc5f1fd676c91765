"""The image, built from the Dockerfile with no registry and no index, runs as the Compose sidecar.

The image is built FROM a Debian base with python3 imported in the test (``--build-arg BASE``)
with wheels downloaded on the host; examples/compose/docker-compose.yml runs as shipped with the
real ``docker-compose``, its ``${VAR}``s pointing at the session's engine and free ports. The app is
killed → the sidecar restarts it → the webhook receiver on the host gets ``incident.opened`` and
``incident.resolved``. Also: the agent is PID 1 as a non-root user, the HEALTHCHECK command passes
while it serves, and SIGTERM stops it with exit 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fixtures_agent import SECRET, Receiver, free_port, wait_until
from tests.fixtures_docker import TEST_IMAGE
from tests.fixtures_images import Docker, project_source, unavailable

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "examples" / "compose" / "docker-compose.yml"


@pytest.fixture(scope="module")
def lifeguard_image(
    images_docker: Docker, debian_python_image: str, wheels: Path, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The Dockerfile built from Debian's python3 and the host's wheels (nothing fetched)."""
    context = project_source(tmp_path_factory.mktemp("image") / "context")
    shutil.copytree(wheels, context / "wheels")
    tag = f"lifeguard-test/lifeguard:{uuid.uuid4().hex[:8]}"
    images_docker.build(tag, context, "--build-arg", f"BASE={debian_python_image}", timeout=600)
    return tag


class Compose:
    """``docker-compose`` (v1, from Debian) on the example file, against the session's engine."""

    def __init__(self, docker_url: str, env: dict[str, str]) -> None:
        binary = shutil.which("docker-compose")
        if binary is None:
            unavailable("docker-compose is not installed (apt-get install -y docker-compose)")
        self.command = [str(binary), "-f", str(COMPOSE_FILE), "--no-ansi"]
        self.env = {**os.environ, "DOCKER_HOST": docker_url, **env}

    def __call__(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(
            [*self.command, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, f"docker-compose {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture
async def project(
    docker_url: str, images_docker: Docker, lifeguard_image: str, receiver: Receiver
) -> AsyncIterator[tuple[Compose, dict[str, str]]]:
    socket_path = docker_url.removeprefix("unix://")
    env = {
        "COMPOSE_PROJECT_NAME": f"lgtest{uuid.uuid4().hex[:8]}",
        "LIFEGUARD_IMAGE": lifeguard_image,
        "APP_IMAGE": TEST_IMAGE,
        "APP_CONTAINER": f"lg-app-{uuid.uuid4().hex[:8]}",
        "APP_PORT": str(free_port()),
        "LIFEGUARD_PORT": str(free_port()),
        "DOCKER_SOCKET": socket_path,
        "DOCKER_GID": str(os.stat(socket_path).st_gid),
        "LIFEGUARD_WEBHOOK_URL": receiver.url,
        "LIFEGUARD_WEBHOOK_SECRET": SECRET,
        "LIFEGUARD_INTERVAL": "500ms",
        "LIFEGUARD_OPEN_AFTER": "0s",
        "LIFEGUARD_COOLDOWN": "3s",
    }
    compose = Compose(docker_url, env)
    compose("up", "-d", "--no-build")
    try:
        yield compose, env
    finally:
        compose("down", "-v", "-t", "1")


def container_of(docker: Docker, project: str, service: str) -> dict[str, object]:
    ids = docker(
        "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}",
        "--filter", f"label=com.docker.compose.service={service}",
    ).split()  # fmt: skip
    assert len(ids) == 1, f"{service}: {ids}"
    attrs: dict[str, object] = json.loads(docker("inspect", ids[0]))[0]
    return attrs


async def http_ok(url: str) -> bool:
    import aiohttp

    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            async with session.get(url) as answer:
                return answer.status == 200
    except (aiohttp.ClientError, TimeoutError):
        return False


async def wait_http(url: str, bound: float, what: str) -> None:
    deadline = time.monotonic() + bound
    while not await http_ok(url):
        assert time.monotonic() < deadline, f"timed out after {bound}s waiting for {what} ({url})"
        await _sleep(0.2)


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_sidecar_restarts_the_killed_app_and_the_webhook_gets_opened_and_resolved(
    project: tuple[Compose, dict[str, str]], images_docker: Docker, receiver: Receiver
) -> None:
    compose, env = project
    await wait_http(f"http://127.0.0.1:{env['APP_PORT']}/health", 30, "the app")
    await wait_http(f"http://127.0.0.1:{env['LIFEGUARD_PORT']}/health", 60, "the sidecar's API")
    before = container_of(images_docker, env["COMPOSE_PROJECT_NAME"], "app")

    images_docker("kill", env["APP_CONTAINER"])

    await wait_until(lambda: receiver.of("incident.opened"), 30, "incident.opened at the receiver")
    await wait_until(lambda: receiver.of("incident.resolved"), 60, "incident.resolved at the receiver")
    opened, resolved = receiver.of("incident.opened")[0], receiver.of("incident.resolved")[0]
    assert opened["incident"]["check"] == "app" and resolved["incident"]["id"] == opened["incident"]["id"]
    after = container_of(images_docker, env["COMPOSE_PROJECT_NAME"], "app")
    state_before, state_after = before["State"], after["State"]
    assert isinstance(state_before, dict) and isinstance(state_after, dict)
    assert state_after["Running"] and state_after["StartedAt"] != state_before["StartedAt"]
    assert await http_ok(f"http://127.0.0.1:{env['APP_PORT']}/health")


async def test_sidecar_runs_as_pid_1_non_root_passes_its_healthcheck_and_stops_on_sigterm(
    project: tuple[Compose, dict[str, str]], images_docker: Docker
) -> None:
    compose, env = project
    await wait_http(f"http://127.0.0.1:{env['LIFEGUARD_PORT']}/health", 60, "the sidecar's API")
    sidecar = container_of(images_docker, env["COMPOSE_PROJECT_NAME"], "lifeguard")
    name = str(sidecar["Name"]).lstrip("/")
    config = sidecar["Config"]
    assert isinstance(config, dict)
    assert config["User"] == "lifeguard"
    assert images_docker("exec", name, "id", "-u").strip() != "0"
    pid1 = images_docker("exec", name, "cat", "/proc/1/cmdline").split("\0")
    assert any(part.endswith("lifeguard") for part in pid1) and "run" in pid1, pid1
    # The image's HEALTHCHECK command, run as Docker runs it.
    test = config["Healthcheck"]["Test"]
    assert test[0] == "CMD", test
    images_docker("exec", name, *test[1:])

    started = time.monotonic()
    compose("stop", "-t", "20", "lifeguard")
    assert time.monotonic() - started < 15, "SIGTERM to PID 1 stops the agent well within the grace period"
    state = container_of(images_docker, env["COMPOSE_PROJECT_NAME"], "lifeguard")["State"]
    assert isinstance(state, dict) and state["ExitCode"] == 0, state


async def test_the_sidecar_discovers_labelled_containers_of_its_own_project_only(
    project: tuple[Compose, dict[str, str]], images_docker: Docker
) -> None:
    """`docker.discover: {project: auto}` in the real sidecar: a labelled container of its own project,
    started later, becomes a check named after its service and goes when it is removed; one labelled
    the same way in another project is ignored."""
    import aiohttp

    _, env = project
    api = f"http://127.0.0.1:{env['LIFEGUARD_PORT']}/api/checks"
    await wait_http(f"http://127.0.0.1:{env['LIFEGUARD_PORT']}/health", 60, "the sidecar's API")

    async def names() -> set[str]:
        async with aiohttp.ClientSession() as session, session.get(api) as answer:
            return {c["name"] for c in (await answer.json())["checks"]}

    def labelled(name: str, project_name: str, service: str) -> None:
        images_docker(
            "run", "-d", "--name", name, "--network", "host",
            "--label", f"com.docker.compose.project={project_name}",
            "--label", f"com.docker.compose.service={service}",
            "--label", "lifeguard.check.type=container", "--label", "lifeguard.check.interval=1s",
            TEST_IMAGE, "sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait",
        )  # fmt: skip

    worker, stranger = f"lg-worker-{uuid.uuid4().hex[:8]}", f"lg-stranger-{uuid.uuid4().hex[:8]}"
    labelled(stranger, "someoneelse", "stranger")
    labelled(worker, env["COMPOSE_PROJECT_NAME"], "worker")
    try:
        deadline = time.monotonic() + 30
        while "worker" not in await names():
            assert time.monotonic() < deadline, f"the worker was never discovered: {await names()}"
            await _sleep(0.2)
        assert "stranger" not in await names()
        images_docker("rm", "-f", worker)
        deadline = time.monotonic() + 30
        while "worker" in await names():
            assert time.monotonic() < deadline, "the removed worker's check stayed"
            await _sleep(0.2)
        assert "app" in await names()  # the configured check is untouched
    finally:
        images_docker("rm", "-f", worker, stranger)
