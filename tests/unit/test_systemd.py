"""The unit files pass systemd's own checker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pgsync_dossier import systemd


def test_units_have_the_config_user_and_hardening(tmp_path: Path) -> None:
    made = systemd.units(Path("/etc/pgsync dossier/config.yaml"), "dossier", "/usr/bin/pgsync-dossier")
    assert set(made) == {
        "pgsync-dossier-tick.service",
        "pgsync-dossier-tick.timer",
        "pgsync-dossier.service",
        "pgsync-dossier-startup.service",
    }
    tick = made["pgsync-dossier-tick.service"]
    assert "ExecStart=/usr/bin/pgsync-dossier --config '/etc/pgsync dossier/config.yaml' tick" in tick
    assert "User=dossier" in tick and "NoNewPrivileges=yes" in tick and "ProtectSystem=strict" in tick
    assert "tick --startup" in made["pgsync-dossier-startup.service"]
    assert "OnUnitActiveSec=1min" in made["pgsync-dossier-tick.timer"]
    assert "pgsync-dossier-startup.service" not in systemd.units(
        Path("/c.yaml"), "u", "/x", sync_at_startup=False
    )


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_units_verify(tmp_path: Path) -> None:
    executable = shutil.which("true")
    assert executable
    made = systemd.units(tmp_path / "config.yaml", "root", executable)
    for name, text in made.items():
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(tmp_path / name) for name in made)],
        capture_output=True,
        text=True,
        check=False,
    )
    problems = [
        line
        for line in result.stderr.splitlines()
        # The host may not run systemd (containers): only our files' own problems count.
        if str(tmp_path) in line or "pgsync-dossier" in line
    ]
    assert result.returncode == 0 and not problems, result.stderr
