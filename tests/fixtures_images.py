"""Debian images and wheels for the tests that run Lifeguard the way it ships: no registry, no index.

Building them is slow (debootstrap ~2 min, an ``apt-get install`` in a build ~1 min), so each
artefact is built once and cached by content under ``~/.cache/lifeguard-tests/`` (or
``$LIFEGUARD_TEST_CACHE``), named after a hash of everything it is built from — its recipe, the
Debian mirror, the artefact it derives from. A second run loads them from the cache in seconds; a
changed recipe gets a new name and the old file is removed. Several sessions may build at once
(worktrees share the cache): a lock file per artefact makes one build and the others wait.

- ``debian_base``: ``debootstrap --variant=minbase bookworm`` → a tarball → ``docker import``.
- ``debian_python_image``: the base with Debian's python3 and python3-venv (the Dockerfile's ``BASE``).
- ``systemd_image``: the base with systemd as PID 1 (/work/shared/RECIPES.md: masks, ``container=docker``).
- ``wheels``: the project's dependencies (and setuptools to build it) for bookworm's Python, downloaded
  on the host with ``pip download --only-binary=:all:``, since pip inside a build cannot reach the index.

Derived images are cached as ``docker save`` tarballs and come back with ``docker load``. Like the
Docker fixtures, these skip loudly when they cannot be built, and fail under ``CI=true``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LIFEGUARD_TEST_CACHE") or Path.home() / ".cache" / "lifeguard-tests")
SUITE = "bookworm"
DEBIAN_PYTHON = "3.11"  # bookworm's python3 (3.11.2): the wheels are for it
RECIPE = "1"  # bump to rebuild every artefact

BASE_IMAGE = "local/debian:bookworm"
PYTHON_IMAGE = "local/debian-python:bookworm"
SYSTEMD_IMAGE = "local/debian-systemd:bookworm"

APT_INSTALL = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends"
APT_CLEAN = "apt-get clean && rm -rf /var/lib/apt/lists/*"

PYTHON_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN {APT_INSTALL} python3 python3-venv ca-certificates && {APT_CLEAN}
CMD ["/usr/bin/python3"]
"""

# systemd as PID 1 in a container: units that need a real machine are masked, `container=docker`
# tells systemd where it runs, SIGRTMIN+3 is its "halt" signal. A `docker` group exists as on a host
# with Docker, so a unit with SupplementaryGroups=docker starts; procps brings /bin/kill, which
# `ExecReload=/bin/kill -HUP $MAINPID` needs (every Debian host has it, minbase does not).
SYSTEMD_DOCKERFILE = f"""\
FROM {BASE_IMAGE}
RUN {APT_INSTALL} systemd systemd-sysv procps python3 python3-venv ca-certificates && {APT_CLEAN}
RUN systemctl mask getty.target console-getty.service systemd-logind.service systemd-sysctl.service \\
      systemd-modules-load.service systemd-binfmt.service systemd-remount-fs.service \\
      systemd-firstboot.service dev-hugepages.mount sys-kernel-debug.mount sys-kernel-tracing.mount \\
      sys-kernel-config.mount sys-fs-fuse-connections.mount proc-sys-fs-binfmt_misc.automount \\
      systemd-udevd.service systemd-udev-trigger.service systemd-networkd-wait-online.service \\
 && groupadd --system docker
ENV container=docker
STOPSIGNAL SIGRTMIN+3
CMD ["/sbin/init"]
"""

# How a container runs systemd as PID 1 here (`--privileged` fails on these machines).
SYSTEMD_RUN_FLAGS = [
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
    "--cgroupns", "host", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--network", "host",
]  # fmt: skip


def unavailable(reason: str) -> None:
    """Skip loudly, or fail under CI, where a skipped image test is a failure."""
    message = f"IMAGE TESTS NOT RUN: {reason}"
    if os.environ.get("CI", "").strip().lower() == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def content_key(*parts: str | bytes) -> str:
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big") + data)
    return digest.hexdigest()[:16]


def debian_mirror(sources: Path = Path("/etc/apt/sources.list.d/debian.sources")) -> str:
    """The host's Debian mirror for bookworm (deb822 ``debian.sources``, else ``sources.list``)."""
    with contextlib.suppress(OSError):
        for stanza in re.split(r"\n\s*\n", sources.read_text()):
            fields = dict(
                (line.split(":", 1)[0].strip(), line.split(":", 1)[1].strip())
                for line in stanza.splitlines()
                if ":" in line and not line.startswith("#")
            )
            if SUITE in fields.get("Suites", "").split() and fields.get("URIs"):
                return fields["URIs"].split()[0]
    with contextlib.suppress(OSError):
        for line in Path("/etc/apt/sources.list").read_text().splitlines():
            words = line.split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return next(w for w in words[1:] if not w.startswith("["))
    return "http://deb.debian.org/debian"


def cached(name: str, key: str, build: Callable[[Path], None], suffix: str = "") -> Path:
    """``CACHE/name-key.suffix``, built by ``build(tmp_path)`` the first time (under a lock), then reused.

    Older versions of ``name`` (other keys) are removed once the new one is in place.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{name}-{key}{suffix}"
    if path.exists():
        return path
    with open(CACHE / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if path.exists():  # built by another session while we waited
            return path
        tmp = CACHE / f".{name}-{key}{suffix}.{os.getpid()}.tmp"
        _remove(tmp)
        started = time.monotonic()
        try:
            build(tmp)
            os.replace(tmp, path)
        finally:
            _remove(tmp)
        print(f"\n[images] built {path.name} in {time.monotonic() - started:.0f}s", file=sys.stderr)
        for old in CACHE.glob(f"{name}-*{suffix}"):
            if old != path:
                _remove(old)
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def run(command: list[str], *, timeout: float = 900, input: bytes | None = None, what: str = "") -> str:
    """Run a command; on failure raise with its output (the tail), which says why."""
    done = subprocess.run(command, capture_output=True, input=input, timeout=timeout, check=False)
    if done.returncode != 0:
        output = (done.stdout + done.stderr).decode(errors="replace")
        tail = "\n".join(output.splitlines()[-40:])
        raise RuntimeError(f"{what or command[0]} failed (exit {done.returncode}):\n{tail}")
    return done.stdout.decode(errors="replace")


class Docker:
    """The ``docker`` command line against the session's engine (it streams big tarballs)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.binary = shutil.which("docker") or "docker"

    def __call__(self, *args: str, timeout: float = 900, input: bytes | None = None) -> str:
        return run([self.binary, "-H", self.url, *args], timeout=timeout, input=input, what=f"docker {args[0]}")

    def has_image(self, tag: str) -> bool:
        done = subprocess.run([self.binary, "-H", self.url, "image", "inspect", tag], capture_output=True, check=False)
        return done.returncode == 0

    def build(self, tag: str, context: Path, *extra: str, timeout: float = 900) -> None:
        # The host network: a build's RUN reaches the Debian mirror only through it (no bridge here).
        self("build", "--network", "host", "-q", "-t", tag, *extra, str(context), timeout=timeout)


def _debootstrap(tarball: Path, mirror: str) -> None:
    debootstrap = shutil.which("debootstrap") or shutil.which("debootstrap", path="/usr/sbin:/sbin")
    if debootstrap is None:
        unavailable("debootstrap is not installed (apt-get install -y debootstrap)")
        return
    rootfs = Path(tempfile.mkdtemp(prefix="lg-rootfs-", dir=CACHE))
    try:
        run([debootstrap, "--variant=minbase", SUITE, str(rootfs), mirror], timeout=1200, what="debootstrap")
        run(["tar", "-C", str(rootfs), "--numeric-owner", "-cf", str(tarball), "."], what="tar")
    finally:
        _unmount_under(rootfs)
        shutil.rmtree(rootfs, ignore_errors=True)


def _unmount_under(root: Path) -> None:
    """debootstrap mounts /proc and /sys in the rootfs; a failed run may leave them mounted."""
    prefix = str(root) + "/"
    with contextlib.suppress(OSError):
        mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
        for mountpoint in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
            subprocess.run(["umount", "-l", mountpoint], check=False, capture_output=True)


def base_key() -> str:
    return content_key(RECIPE, "debootstrap --variant=minbase", SUITE, debian_mirror())


def ensure_base(docker: Docker) -> str:
    """Import the debootstrapped base into the engine (building its tarball once); its cache key."""
    key = base_key()
    if not docker.has_image(BASE_IMAGE):
        tarball = cached(f"debian-{SUITE}-minbase", key, lambda tmp: _debootstrap(tmp, debian_mirror()), ".tar")
        docker("import", "-c", 'CMD ["/bin/bash"]', str(tarball), BASE_IMAGE)
    return key


def ensure_derived(docker: Docker, tag: str, dockerfile: str) -> None:
    """Build ``tag`` from ``dockerfile`` (FROM the base) once, cached as a ``docker save`` tarball."""
    if docker.has_image(tag):
        return
    key = content_key(RECIPE, base_key(), dockerfile)
    name = tag.replace("/", "_").replace(":", "_")

    def build(tmp: Path) -> None:
        ensure_base(docker)
        with tempfile.TemporaryDirectory(prefix="lg-build-") as context:
            (Path(context) / "Dockerfile").write_text(dockerfile)
            docker.build(tag, Path(context))
        docker("save", "-o", str(tmp), tag)

    tarball = cached(name, key, build, ".tar")
    if not docker.has_image(tag):  # built by another session: load what it saved
        docker("load", "-q", "-i", str(tarball))


def project_dependencies() -> list[str]:
    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def wheel_platforms() -> list[str]:
    """manylinux tags bookworm (glibc 2.36) runs; pip expands manylinux2014 down to the older ones."""
    arch = platform.machine()
    return [f"manylinux2014_{arch}", *(f"manylinux_2_{minor}_{arch}" for minor in range(28, 37))]


def download_wheels(dest: Path) -> None:
    requirements = [*project_dependencies(), "setuptools>=68", "wheel"]
    version = DEBIAN_PYTHON.replace(".", "")
    platforms = [arg for p in wheel_platforms() for arg in ("--platform", p)]
    dest.mkdir(parents=True)
    run(
        [
            sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
            "--only-binary=:all:", "--python-version", DEBIAN_PYTHON, "--implementation", "cp",
            "--abi", f"cp{version}", *platforms, "--dest", str(dest), *requirements,
        ],
        timeout=900, what="pip download",
    )  # fmt: skip


def wheels_key() -> str:
    return content_key(RECIPE, DEBIAN_PYTHON, *wheel_platforms(), *sorted(project_dependencies()))


@pytest.fixture(scope="session")
def wheels() -> Path:
    """A folder of wheels: every dependency of the project for bookworm's Python, and setuptools.

    With it, ``pip install --no-index --find-links DIR .`` installs the project with no index.
    """
    try:
        return cached("wheels", wheels_key(), download_wheels)
    except RuntimeError as error:
        unavailable(f"cannot download the wheels: {error}")
        raise


def _images_available() -> None:
    if os.geteuid() != 0:
        unavailable("debootstrap and dockerd need root")


@pytest.fixture(scope="session")
def images_docker(docker_url: str) -> Docker:
    """The ``docker`` command line on the session's engine."""
    _images_available()
    if shutil.which("docker") is None:
        unavailable("the docker command line is not installed (apt-get install -y docker.io)")
    return Docker(docker_url)


@pytest.fixture(scope="session")
def debian_base(images_docker: Docker) -> str:
    """``local/debian:bookworm``, imported from the cached debootstrap tarball."""
    try:
        ensure_base(images_docker)
    except RuntimeError as error:
        unavailable(f"cannot build the Debian base image: {error}")
    return BASE_IMAGE


@pytest.fixture(scope="session")
def debian_python_image(images_docker: Docker, debian_base: str) -> str:
    """``local/debian-python:bookworm``: Debian's python3 and python3-venv, as a Dockerfile ``BASE``."""
    try:
        ensure_derived(images_docker, PYTHON_IMAGE, PYTHON_DOCKERFILE)
    except RuntimeError as error:
        unavailable(f"cannot build {PYTHON_IMAGE}: {error}")
    return PYTHON_IMAGE


@pytest.fixture(scope="session")
def systemd_image(images_docker: Docker, debian_base: str) -> str:
    """``local/debian-systemd:bookworm``: boots systemd as PID 1 with ``SYSTEMD_RUN_FLAGS``."""
    try:
        ensure_derived(images_docker, SYSTEMD_IMAGE, SYSTEMD_DOCKERFILE)
    except RuntimeError as error:
        unavailable(f"cannot build {SYSTEMD_IMAGE}: {error}")
    return SYSTEMD_IMAGE


def project_source(dest: Path) -> Path:
    """A copy of what a clone ships to a machine: the packages, the scripts, the unit, the examples."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache", ".pytest_cache")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("agent", "checks", "actions", "scripts", "systemd", "examples", "docker"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=ignore)
    for name in ("pyproject.toml", "README.md", "config.yaml", "Dockerfile", ".dockerignore"):
        if (ROOT / name).exists():
            shutil.copy2(ROOT / name, dest / name)
    return dest


@pytest.fixture
def source_with_wheels(tmp_path: Path, wheels: Path) -> Iterator[Path]:
    """The project's source with a ``wheels/`` folder beside it: an unpacked offline release."""
    source = project_source(tmp_path / "lifeguard")
    shutil.copytree(wheels, source / "wheels")
    yield source
