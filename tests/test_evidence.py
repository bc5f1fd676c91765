"""The evidence bundle: its shape, that secrets never reach it, and that it never waits long."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.dockerclient import DockerEngine
from agent.evidence import (
    EvidenceCollector,
    container_section,
    docker_time,
    host_snapshot,
    iso,
    response_section,
)
from agent.redact import REDACTED
from checks.base import CheckResult
from tests.fixtures_agent import poll, wait_until
from tests.fixtures_docker import MS, TEST_IMAGE, RunContainer, SilentDocker, unique

SECRET = "s3cr3t-value"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
T0 = 1_795_000_000.0  # 2026-11-18T11:06:40Z


def inspect_attrs() -> dict[str, Any]:
    """``docker inspect`` of an unhealthy container, as Docker 20.10 (API 1.41) returns it.

    The token is everywhere a careless copy would pick it up: the environment, the command line,
    the health check's command, a label.
    """
    return {
        "Id": "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f",
        "Created": "2026-11-24T03:01:10.123456789Z",
        "Path": "/app/server",
        "Args": ["--listen", "127.0.0.1:8080", "--token", SECRET],
        "State": {
            "Status": "running",
            "Running": True,
            "Paused": False,
            "Restarting": False,
            "OOMKilled": False,
            "Dead": False,
            "Pid": 4242,
            "ExitCode": 0,
            "Error": "",
            "StartedAt": "2026-11-24T03:01:10.987654321Z",
            "FinishedAt": "0001-01-01T00:00:00Z",
            "Health": {
                "Status": "unhealthy",
                "FailingStreak": 3,
                "Log": [
                    {
                        "Start": "2026-11-24T03:12:40.100200300Z",
                        "End": "2026-11-24T03:12:40.150000000Z",
                        "ExitCode": 0,
                        "Output": "ok\n",
                    },
                    {
                        "Start": "2026-11-24T04:12:41.100200300+01:00",
                        "End": "2026-11-24T04:12:41.6+01:00",
                        "ExitCode": 1,
                        "Output": f"GET /health with token {SECRET}: 503 Service Unavailable\n",
                    },
                ],
            },
        },
        "Image": "sha256:9c7a54a9a43cca047013b82af109fe963fde787f63f9e016fdc3384500c2823d",
        "ResolvConfPath": "/var/lib/docker/containers/3f2a9c1d8e7b/resolv.conf",
        "HostnamePath": "/var/lib/docker/containers/3f2a9c1d8e7b/hostname",
        "HostsPath": "/var/lib/docker/containers/3f2a9c1d8e7b/hosts",
        "LogPath": "/var/lib/docker/containers/3f2a9c1d8e7b/3f2a9c1d8e7b-json.log",
        "Name": "/api",
        "RestartCount": 2,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "docker-default",
        "ExecIDs": None,
        "HostConfig": {
            "NetworkMode": "host",
            "RestartPolicy": {"Name": "unless-stopped", "MaximumRetryCount": 0},
            "LogConfig": {"Type": "json-file", "Config": {}},
        },
        "Mounts": [],
        "Config": {
            "Hostname": "web-01",
            "Domainname": "",
            "User": "",
            "AttachStdin": False,
            "AttachStdout": False,
            "AttachStderr": False,
            "Tty": False,
            "OpenStdin": False,
            "StdinOnce": False,
            "Env": [
                f"API_TOKEN={SECRET}",
                "DB_PASSWORD=hunter2-db",
                "AUTH_ENABLED=true",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            ],
            "Cmd": ["--listen", "127.0.0.1:8080", "--token", SECRET],
            "Healthcheck": {
                "Test": ["CMD-SHELL", f"wget -q -O- --header 'X-Token: {SECRET}' http://127.0.0.1:8080/health"],
                "Interval": 5000000000,
                "Retries": 3,
            },
            "Image": "local/api:1.4",
            "Volumes": None,
            "WorkingDir": "/app",
            "Entrypoint": ["/app/server"],
            "OnBuild": None,
            "Labels": {"com.example.deploy-token": SECRET},
        },
        "NetworkSettings": {"Bridge": "", "SandboxID": "7c1e", "Networks": {"host": {"NetworkID": "aa11"}}},
    }


LOGS = [
    "2026-11-24T03:12:39.000000001Z starting server on 127.0.0.1:8080",
    f"2026-11-24T03:12:40.250000000Z debug: outbound auth header is {SECRET}",
    "2026-11-24T03:12:41.500000000Z error: db connect failed (password hunter2-db rejected)\n",
]


def result(
    ok: bool, at: float, message: str = "HTTP 200", details: dict[str, Any] | None = None
) -> CheckResult:
    return CheckResult("api", ok, at, 0.0123, message, details or {})


def http_failure(
    body: str,
    headers: dict[str, str],
    *,
    url: str = "http://127.0.0.1/",
    status: int = 500,
    truncated: bool = False,
    message: str = "HTTP 500",
) -> CheckResult:
    """A failing http result with ``details["response"]`` as checks/http.py records it."""
    response = {"url": url, "status": status, "headers": headers, "body": body,
                "body_truncated": truncated}  # fmt: skip
    return result(False, T0, message, {"response": response})


# -- container_section: pure, from raw inspect attrs ----------------------------------------


def test_container_section_never_carries_the_environment_or_its_secret_values() -> None:
    """A secret in Config.Env, Cmd, labels and the health command appears nowhere in the section."""
    attrs = inspect_attrs()
    section = container_section(attrs, LOGS, [SECRET, "hunter2-db"])
    dumped = json.dumps(section)

    assert SECRET not in dumped
    assert "hunter2-db" not in dumped
    assert "API_TOKEN" not in dumped and "/usr/local/sbin" not in dumped, "the env is never copied"
    assert section["logs"][1] == f"2026-11-24T03:12:40.250000000Z debug: outbound auth header is {REDACTED}"


def test_container_section_maps_identity_state_and_health() -> None:
    """Identity and state come out in the bundle's names, times as ISO-8601 UTC milliseconds."""
    section = container_section(inspect_attrs(), LOGS, [SECRET])

    assert section["name"] == "api"
    assert section["id"] == "3f2a9c1d8e7b"
    assert section["image"] == "local/api:1.4"
    assert section["state"] == {
        "status": "running",
        "running": True,
        "exit_code": 0,
        "oom_killed": False,
        "restart_count": 2,
        "started_at": "2026-11-24T03:01:10.987Z",
        "finished_at": None,  # Docker's "never": 0001-01-01T00:00:00Z
        "health": {
            "status": "unhealthy",
            "failing_streak": 3,
            "log": [
                {
                    "start": "2026-11-24T03:12:40.100Z",
                    "end": "2026-11-24T03:12:40.150Z",
                    "exit_code": 0,
                    "output": "ok",
                },
                {
                    "start": "2026-11-24T03:12:41.100Z",  # +01:00 in Docker, UTC here
                    "end": "2026-11-24T03:12:41.600Z",
                    "exit_code": 1,
                    "output": f"GET /health with token {REDACTED}: 503 Service Unavailable",
                },
            ],
        },
    }
    assert section["logs"][0] == LOGS[0]
    assert section["logs"][2].endswith("rejected)"), "trailing newlines are dropped"


def test_container_section_without_health_check_or_state() -> None:
    """A container with no health check has health null; missing fields do not raise."""
    attrs = {
        "Id": "abc",
        "Name": "/bare",
        "Image": "sha256:1",
        "Config": {},
        "State": {"Status": "exited", "ExitCode": 137, "OOMKilled": True},
    }
    section = container_section(attrs, [], [])
    assert section["image"] == "sha256:1"
    assert section["state"]["health"] is None
    assert section["state"]["oom_killed"] is True
    assert section["state"]["exit_code"] == 137
    assert section["logs"] == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-11-24T03:12:42.123456789Z", "2026-11-24T03:12:42.123Z"),
        ("2026-11-24T03:12:42Z", "2026-11-24T03:12:42.000Z"),
        ("2026-11-24T05:12:42.5+02:00", "2026-11-24T03:12:42.500Z"),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
    ],
)
def test_docker_time(raw: str | None, expected: str | None) -> None:
    assert docker_time(raw) == expected


def test_iso_has_milliseconds_and_z() -> None:
    assert iso(T0 + 0.1234) == "2026-11-18T11:06:40.123Z"


# -- response_section: pure, from the http check's details -----------------------------------


def test_response_section_redacts_url_headers_and_body() -> None:
    failing = result(
        False,
        T0,
        "HTTP 500",
        {
            "response": {
                "url": "http://ops:pw@127.0.0.1:8080/health?api_key=k-999&verbose=1",
                "status": 500,
                "headers": {
                    "Content-Type": "application/json",
                    "Set-Cookie": "sid=abc; HttpOnly",
                    "X-Upstream": f"auth={SECRET}",
                },
                "body": json.dumps({"error": f"db down, tried {SECRET}", "dsn": "postgres://a:b@db/x", "retry": 3}),
                "body_truncated": False,
            }
        },
    )

    section = response_section(failing, [SECRET])

    assert section == {
        "url": f"http://{REDACTED}@127.0.0.1:8080/health?api_key={REDACTED}&verbose=1",
        "status": 500,
        "headers": {"Content-Type": "application/json", "Set-Cookie": REDACTED, "X-Upstream": f"auth={REDACTED}"},
        "body": json.dumps({"error": f"db down, tried {REDACTED}", "dsn": REDACTED, "retry": 3}),
        "body_truncated": False,
    }


def test_response_section_scrubs_a_truncated_body_as_text() -> None:
    body = '{"status": "down", "password": "hunter2", "trace": "' + "x" * 50
    failing = http_failure(body, {"content-type": "application/json"}, status=503, truncated=True)
    section = response_section(failing, [])
    assert section is not None
    assert "hunter2" not in section["body"]
    assert section["body"].startswith(f'{{"status": "down", "password": "{REDACTED}"')
    assert section["body_truncated"] is True


@pytest.mark.parametrize(
    "failing",
    [None, result(False, T0, "connection refused"), result(False, T0, "x", {"response": None})],
)
def test_response_section_is_null_without_an_http_response(failing: CheckResult | None) -> None:
    assert response_section(failing, []) is None


# -- host_snapshot ------------------------------------------------------------------------------


def test_host_snapshot_shape(tmp_path: Path) -> None:
    """Host figures for / and the state dir, and five top processes, in plain JSON types."""
    missing = tmp_path / "gone"
    snap = host_snapshot([Path("/"), tmp_path, Path("/"), missing])

    json.dumps(snap)  # plain types only
    assert snap["hostname"]
    assert 0.0 <= snap["cpu_percent"] <= 100.0
    assert len(snap["load_avg"]) == 3
    assert snap["memory"]["total"] >= snap["memory"]["available"] > 0
    assert [d["path"] for d in snap["disk"]] == ["/", str(tmp_path), str(missing)]
    assert snap["disk"][0]["total"] >= snap["disk"][0]["used"] > 0
    assert "error" in snap["disk"][2]
    tops = snap["top_processes"]
    assert 1 <= len(tops) <= 5
    assert set(tops[0]) == {"pid", "name", "cpu_percent", "rss"}
    keys = [(p["cpu_percent"], p["rss"]) for p in tops]
    assert keys == sorted(keys, reverse=True)


# -- collect() ---------------------------------------------------------------------------------


# A service as careless as they come: it logs its own secrets, and its health probe echoes one.
API_SCRIPT = (
    'echo "starting server on 127.0.0.1:8080"; '
    'echo "debug: outbound auth header is $API_TOKEN"; '
    'echo "error: db connect failed (password $DB_PASSWORD rejected)"; '
    "trap 'exit 0' TERM; sleep 3600 & wait"
)
API_ENV = {"API_TOKEN": SECRET, "DB_PASSWORD": "hunter2-db", "AUTH_ENABLED": "true"}
API_HEALTHCHECK = {
    "test": ["CMD-SHELL", 'echo "GET /health with token $API_TOKEN: 503 Service Unavailable"; exit 1'],
    "interval": 100 * MS,
    "timeout": 1000 * MS,
    "retries": 3,
}


@pytest.fixture
def collectors(tmp_path: Path) -> Iterator[Callable[..., EvidenceCollector]]:
    """Factory: ``EvidenceCollector(docker, tmp_path, **kwargs)``; each one closed after the test."""
    made: list[EvidenceCollector] = []

    def make(docker: DockerEngine | None, **kwargs: Any) -> EvidenceCollector:
        made.append(EvidenceCollector(docker, tmp_path, **kwargs))
        return made[-1]

    yield make
    for collector in made:
        collector.close()


@pytest.fixture
async def api_container(docker_engine: DockerEngine, run_container: RunContainer) -> str:
    """A running container that has logged its three lines and run its health probe."""
    name = unique("evidence")
    run_container(name, ["sh", "-c", API_SCRIPT], environment=API_ENV, healthcheck=API_HEALTHCHECK)
    await poll(lambda: docker_engine.logs(name), lambda lines: len(lines) >= 3, what="three log lines")
    await poll(
        lambda: docker_engine.inspect(name),
        lambda attrs: (attrs["State"].get("Health") or {}).get("Log"),
        what="a health probe",
    )
    return name


@pytest.fixture
async def hung_engine(silent_docker: SilentDocker) -> AsyncIterator[DockerEngine]:
    """A ``DockerEngine`` on a socket that never answers, with a timeout far beyond the tests' bounds."""
    engine = DockerEngine(silent_docker.url, timeout=10.0)
    yield engine
    await engine.close()


async def test_collect_without_docker_has_checks_and_host(tmp_path: Path) -> None:
    """Without a container: checks capped to the last 20, oldest first; host filled; no container."""
    history = [result(i % 3 != 0, T0 + i, f"run {i}") for i in range(25)]
    collector = EvidenceCollector(None, tmp_path, clock=lambda: T0 + 30.5)

    bundle = await collector.collect(
        phase="opened", history=history[::-1], failing=history[-1], container=None
    )

    json.dumps(bundle)
    assert bundle["phase"] == "opened"
    assert bundle["collected_at"] == "2026-11-18T11:07:10.500Z"
    assert [c["message"] for c in bundle["checks"]] == [f"run {i}" for i in range(5, 25)]
    assert bundle["checks"][0] == {"at": iso(T0 + 5), "ok": True, "latency_ms": 12.3, "message": "run 5"}
    assert all(ISO_MS.match(c["at"]) for c in bundle["checks"])
    assert bundle["response"] is None
    assert bundle["container"] is None
    host = bundle["host"]
    assert set(host) == {"hostname", "cpu_percent", "load_avg", "memory", "disk", "top_processes"}
    assert [d["path"] for d in host["disk"]] == ["/", str(tmp_path)]


@pytest.mark.docker
async def test_collect_validates_against_the_published_schema(
    docker_engine: DockerEngine, api_container: str, collectors: Callable[..., EvidenceCollector]
) -> None:
    """The bundle is what webhook receivers were promised (``$defs.evidence`` of the v1 schema)."""
    from jsonschema import Draft202012Validator

    schema_path = Path(__file__).parent.parent / "agent/schemas/incident-v1.schema.json"
    schema = json.loads(schema_path.read_text())
    validator = Draft202012Validator({"$defs": schema["$defs"], "$ref": "#/$defs/evidence"})
    failing = http_failure("boom", {"Content-Type": "text/plain"})
    collector = collectors(docker_engine, time_bound=10.0)

    bundle = await collector.collect(phase="opened", history=[failing], failing=failing, container=api_container)

    assert bundle["container"]["state"]["health"]["log"], "the health part is validated too"
    errors = [e.message for e in validator.iter_errors(dict(bundle, url="http://127.0.0.1:9810/x"))]
    assert errors == []


@pytest.mark.docker
async def test_collect_masks_container_env_secrets_everywhere(
    docker_engine: DockerEngine, api_container: str, collectors: Callable[..., EvidenceCollector]
) -> None:
    """Secret env values and extra secrets are masked in logs, health output, body and messages."""
    failing = http_failure(
        f"env says {SECRET}; hook whsec_c2VjcmV0",
        {"Content-Type": "text/plain", "X-Echo": "whsec_c2VjcmV0"},
        message=f"HTTP 500 from http://127.0.0.1/?sig={SECRET}",
    )
    collector = collectors(docker_engine, time_bound=10.0)

    bundle = await collector.collect(
        phase="opened", history=[failing], failing=failing, container=api_container,
        extra_secrets=["whsec_c2VjcmV0"],
    )  # fmt: skip

    dumped = json.dumps(bundle)
    for secret in (SECRET, "hunter2-db", "whsec_c2VjcmV0"):
        assert secret not in dumped
    assert bundle["response"]["body"] == f"env says {REDACTED}; hook {REDACTED}"
    assert bundle["checks"][0]["message"] == f"HTTP 500 from http://127.0.0.1/?sig={REDACTED}"
    logs = bundle["container"]["logs"]
    assert logs[1].endswith(f"auth header is {REDACTED}")
    assert logs[2].endswith(f"(password {REDACTED} rejected)")
    probe = bundle["container"]["state"]["health"]["log"][0]
    assert probe["output"] == f"GET /health with token {REDACTED}: 503 Service Unavailable"


@pytest.mark.docker
async def test_collect_reports_a_missing_container_as_its_error(
    docker_engine: DockerEngine, collectors: Callable[..., EvidenceCollector]
) -> None:
    name = unique("ghost")
    collector = collectors(docker_engine, time_bound=10.0)
    bundle = await collector.collect(phase="resolved", history=[], failing=None, container=name)
    assert bundle["container"] == {"name": name, "error": f"container '{name}' not found"}
    assert bundle["phase"] == "resolved"
    assert "hostname" in bundle["host"]


@pytest.mark.docker
async def test_collect_keeps_container_state_when_only_logs_fail(
    docker_engine: DockerEngine, run_container: RunContainer, collectors: Callable[..., EvidenceCollector]
) -> None:
    """A container that logs to the "none" driver has no logs to read; its state still arrives."""
    name = unique("nolog")
    run_container(name, log_config={"type": "none"})
    collector = collectors(docker_engine, time_bound=10.0)
    bundle = await collector.collect(phase="opened", history=[], failing=None, container=name)
    assert bundle["container"]["state"]["status"] == "running"
    assert bundle["container"]["logs"] == []
    assert bundle["container"]["logs_error"] == "Docker error: configured logging driver does not support reading"


@pytest.mark.docker
async def test_collect_with_docker_but_no_container_tied(
    docker_engine: DockerEngine, collectors: Callable[..., EvidenceCollector]
) -> None:
    """A check without a container asks Docker nothing."""
    collector = collectors(docker_engine)
    bundle = await collector.collect(phase="opened", history=[], failing=None, container=None)
    assert bundle["container"] is None
    assert docker_engine.reachable is None, "the engine was never called"


async def test_collect_returns_within_time_bound_when_docker_hangs(
    silent_docker: SilentDocker, hung_engine: DockerEngine, collectors: Callable[..., EvidenceCollector]
) -> None:
    """A hung Docker costs one section, not the bundle, and no more than the time bound."""
    collector = collectors(hung_engine, time_bound=0.3)
    history = [result(False, T0, "HTTP 500")]

    started = time.monotonic()
    bundle = await collector.collect(phase="opened", history=history, failing=history[0], container="api")
    elapsed = time.monotonic() - started

    assert 0.3 <= elapsed < 1.0
    assert silent_docker.connected.is_set(), "the engine was asked"
    assert bundle["container"] == {"name": "api", "error": "timed out after 300ms"}
    assert "hostname" in bundle["host"]
    assert bundle["checks"][0]["message"] == "HTTP 500"


async def test_collect_bounds_a_slow_host_section(tmp_path: Path) -> None:
    """A host snapshot stuck in its thread (here: on a lock) becomes the host section's error."""
    collector = EvidenceCollector(None, tmp_path, time_bound=0.2)
    # The sampler's lock held by the test stands in for a /proc read that hangs.
    collector._host._lock.acquire()
    try:
        started = time.monotonic()
        bundle = await collector.collect(phase="opened", history=[], failing=None, container=None)
        elapsed = time.monotonic() - started
    finally:
        collector._host._lock.release()

    assert elapsed < 1.0
    assert bundle["host"] == {"error": "timed out after 200ms"}
    assert bundle["checks"] == []


async def test_collections_beyond_the_cap_queue(
    hung_engine: DockerEngine, collectors: Callable[..., EvidenceCollector]
) -> None:
    """A mass outage queues bundles: at most ``max_concurrent`` collect at once, then the rest.

    Docker hangs, so each collection holds its slot for the whole time bound: five with two
    slots take three rounds.
    """
    bound = 0.3
    collector = collectors(hung_engine, time_bound=bound, max_concurrent=2)
    started = time.monotonic()
    runs = [
        asyncio.create_task(collector.collect(phase="opened", history=[], failing=None, container=f"c{i}"))
        for i in range(5)
    ]

    await wait_until(lambda: collector.collecting + collector.queued == 5, 1.0, "five collections under way")
    assert (collector.collecting, collector.queued) == (2, 3)
    await wait_until(lambda: (collector.collecting, collector.queued) == (2, 1), 2 * bound, "the second round")
    await wait_until(lambda: (collector.collecting, collector.queued) == (1, 0), 2 * bound, "the third round")
    bundles = await asyncio.wait_for(asyncio.gather(*runs), 2 * bound)
    elapsed = time.monotonic() - started

    assert (collector.collecting, collector.queued) == (0, 0)
    assert [b["container"] for b in bundles] == [
        {"name": f"c{i}", "error": "timed out after 300ms"} for i in range(5)
    ]
    assert 3 * bound <= elapsed < 3 * bound + 1.0


async def test_host_snapshots_run_on_the_collectors_own_threads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not on the default executor that DNS lookups share; close() lets them go, a later collect makes new ones."""
    import threading

    import agent.evidence as evidence

    seen: list[str] = []

    def snapshot(paths: Any, sampler: Any = None) -> dict[str, Any]:
        seen.append(threading.current_thread().name)
        return {"hostname": "h"}

    monkeypatch.setattr(evidence, "host_snapshot", snapshot)
    collector = EvidenceCollector(None, tmp_path)
    for _ in range(2):
        bundle = await collector.collect(phase="opened", history=[], failing=None, container=None)
        assert bundle["host"] == {"hostname": "h"}
        collector.close()
    assert len(seen) == 2 and all(name.startswith("lifeguard-evidence") for name in seen)


async def test_bundles_gathered_together_share_one_host_snapshot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ten incidents opening in the same second describe the same host: one snapshot (it lists every
    process), not ten in turn; one taken longer ago than HOST_SHARED_FOR is taken again."""
    import agent.evidence as evidence

    taken: list[int] = []

    def snapshot(paths: Any, sampler: Any = None) -> dict[str, Any]:
        taken.append(1)
        return {"hostname": "h", "n": len(taken)}

    monkeypatch.setattr(evidence, "host_snapshot", snapshot)
    collector = EvidenceCollector(None, tmp_path)
    try:
        bundles = await asyncio.gather(*(
            collector.collect(phase="opened", history=[], failing=None, container=None) for _ in range(10)
        ))
        assert len(taken) == 1
        assert all(bundle["host"] == {"hostname": "h", "n": 1} for bundle in bundles)
        bundles[0]["host"]["n"] = 99  # each bundle has its own copy
        assert bundles[1]["host"]["n"] == 1
        monkeypatch.setattr(evidence, "HOST_SHARED_FOR", 0.0)
        later = await collector.collect(phase="resolved", history=[], failing=None, container=None)
        assert later["host"]["n"] == 2 and len(taken) == 2
    finally:
        collector.close()


# -- against a real Docker engine ------------------------------------------------------------


@pytest.mark.docker
async def test_collect_from_a_real_container(
    docker_engine: DockerEngine, api_container: str, collectors: Callable[..., EvidenceCollector]
) -> None:
    """End to end: identity, state, health and logs of a live container, in the bundle's names."""
    attrs = await docker_engine.inspect(api_container)
    collector = collectors(docker_engine, time_bound=10.0)

    bundle = await collector.collect(phase="opened", history=[], failing=None, container=api_container)

    container = bundle["container"]
    assert container["name"] == api_container
    assert container["id"] == attrs["Id"][:12]
    assert container["image"] == TEST_IMAGE
    assert container["state"]["running"] is True
    assert container["state"]["finished_at"] is None
    assert ISO_MS.match(container["state"]["started_at"])
    health = container["state"]["health"]
    assert health["status"] in ("starting", "unhealthy")
    assert health["log"][0]["exit_code"] == 1
    assert ISO_MS.match(health["log"][0]["start"]) and ISO_MS.match(health["log"][0]["end"])
    assert [line.split(" ", 1)[1] for line in container["logs"]] == [
        "starting server on 127.0.0.1:8080",
        f"debug: outbound auth header is {REDACTED}",
        f"error: db connect failed (password {REDACTED} rejected)",
    ]
    assert "AUTH_ENABLED" not in json.dumps(bundle), "the environment is never copied"
