"""Finding server binaries (no server is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgsync_dossier import clusters
from pgsync_dossier.errors import ClusterError


def test_an_explicit_directory_without_postgres_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(clusters.PG_BIN_ENV, str(tmp_path))
    with pytest.raises(ClusterError, match="holds no 'postgres' binary"):
        clusters.find_bindir()


def test_private_binaries_are_passed_over_as_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    private = tmp_path / "private" / "bin"
    private.mkdir(parents=True)
    for name in ("postgres", "initdb"):
        (private / name).write_text("#!/bin/sh\n")
        (private / name).chmod(0o755)
    (tmp_path / "private").chmod(0o700)
    monkeypatch.setattr(clusters, "_running_as_root", lambda: True)
    monkeypatch.setattr(clusters, "_candidates", lambda: [private])
    monkeypatch.delenv(clusters.PG_BIN_ENV, raising=False)
    with pytest.raises(ClusterError, match="cannot be executed by"):
        clusters.find_bindir()
    with pytest.raises(ClusterError, match="cannot execute"):
        clusters.find_bindir(private)
    monkeypatch.setattr(clusters, "_running_as_root", lambda: False)
    assert clusters.find_bindir() == private
