"""The demo runs end to end through the installed entry point and leaves nothing behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import EXECUTABLE


@pytest.fixture
def demo_dir(pg_bindir: Path) -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="pgsd-demo-"))
    os.chmod(parent, 0o755)  # as root, the server user must reach it
    yield parent / "demo"
    subprocess.run([EXECUTABLE, "demo", "--stop", "--dir", str(parent / "demo")], check=False)
    shutil.rmtree(parent, ignore_errors=True)


def _postgres_running_in(directory: Path) -> bool:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return str(directory) in out


def test_demo_end_to_end_and_clean(demo_dir: Path, pg_bindir: Path) -> None:
    env = {**os.environ, "PGSYNC_DOSSIER_PG_BIN": str(pg_bindir)}
    result = subprocess.run(
        [EXECUTABLE, "demo", "--dossiers", "60", "--dir", str(demo_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "refused, as it must be: synchronization canceled" in result.stderr
    assert "every replica matches its Leader list" in result.stderr
    assert "Wanted persons (replica)" in result.stdout and "ready" in result.stdout
    assert not demo_dir.exists() and not _postgres_running_in(demo_dir)


def test_demo_keep_then_stop(demo_dir: Path, pg_bindir: Path) -> None:
    env = {**os.environ, "PGSYNC_DOSSIER_PG_BIN": str(pg_bindir)}
    kept = subprocess.run(
        [EXECUTABLE, "demo", "--keep", "--dossiers", "30", "--dir", str(demo_dir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert kept.returncode == 0, kept.stderr
    assert "demo --stop" in kept.stderr and _postgres_running_in(demo_dir)
    config = demo_dir / "subscriber_a.yaml"
    status = subprocess.run(
        [EXECUTABLE, "--config", str(config), "status", "--json"], capture_output=True, text=True, check=False
    )
    assert status.returncode == 0 and '"state": "ready"' in status.stdout
    again = subprocess.run(
        [EXECUTABLE, "demo", "--dir", str(demo_dir)], capture_output=True, text=True, check=False
    )
    assert again.returncode == 3 and "already running" in again.stderr
    stopped = subprocess.run(
        [EXECUTABLE, "demo", "--stop", "--dir", str(demo_dir)], capture_output=True, text=True, check=False
    )
    assert stopped.returncode == 0 and "removed" in stopped.stderr
    assert not demo_dir.exists() and not _postgres_running_in(demo_dir)
