"""The systemd units a DBA installs. Pure: text only, no database code.

Two ways to drive sync windows, pick one: a timer that runs `tick` every minute (plus a
start-up unit for sync_at_startup), or the `run` service that schedules itself.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

UNIT_PREFIX = "pgsync-dossier"

_HARDENING = """\
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
RestrictNamespaces=yes
LockPersonality=yes
RestrictRealtime=yes
SystemCallArchitectures=native
CapabilityBoundingSet=
UMask=0077"""


def default_executable() -> str:
    found = shutil.which("pgsync-dossier")
    return found or str(Path(sys.executable).with_name("pgsync-dossier"))


def units(
    config_path: Path,
    user: str,
    executable: str | None = None,
    sync_at_startup: bool = True,
    timer_interval: str = "1min",
) -> dict[str, str]:
    """File name -> content."""
    command = shlex.join([executable or default_executable(), "--config", str(config_path)])
    service = f"""\
[Unit]
Description=pgsync-dossier: %s
Wants=network-online.target
After=network-online.target postgresql.service

[Service]
User={user}
Group={user}
Environment=PYTHONUNBUFFERED=1
{_HARDENING}
"""
    made = {
        f"{UNIT_PREFIX}-tick.service": service.replace("%s", "one scheduler step (sync due windows)")
        + f"Type=oneshot\nExecStart={command} tick\nTimeoutStartSec=2h\n",
        f"{UNIT_PREFIX}-tick.timer": f"""\
[Unit]
Description=pgsync-dossier: run the scheduler every {timer_interval}

[Timer]
OnBootSec=30s
OnUnitActiveSec={timer_interval}
AccuracySec=1s
Persistent=true
Unit={UNIT_PREFIX}-tick.service

[Install]
WantedBy=timers.target
""",
        f"{UNIT_PREFIX}.service": service.replace("%s", "scheduler daemon (alternative to the timer)")
        + f"Type=simple\nExecStart={command} run\nRestart=on-failure\nRestartSec=10s\n"
        "KillSignal=SIGTERM\nTimeoutStopSec=5min\n\n[Install]\nWantedBy=multi-user.target\n",
    }
    if sync_at_startup:
        made[f"{UNIT_PREFIX}-startup.service"] = (
            service.replace("%s", "sync every link at start-up")
            + f"Type=oneshot\nExecStart={command} tick --startup\nTimeoutStartSec=2h\n\n"
            "[Install]\nWantedBy=multi-user.target\n"
        )
    return made
