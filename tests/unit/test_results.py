"""The command results keep the `--json` keys (docs/cli.md) of the dicts they replaced."""

from __future__ import annotations

import json

from pgsync_dossier.results import (
    AttachResult,
    DetachResult,
    Differences,
    RepairResult,
    SetupResult,
    UpgradePending,
)

LINK = {
    "local_list": 3,
    "remote_list": 1,
    "leader": "hq",
    "group": "pgsync_g_1",
    "state": "ready",
    "created": True,
    "synced": True,
    "first_sync_pending": False,
    "dossiers": 4,
    "faces": 8,
}


def test_attach_keys() -> None:
    assert AttachResult(**LINK).to_json() == LINK
    assert list(AttachResult(**LINK).to_json()) == list(LINK)


def test_a_repair_in_place_adds_what_it_found_and_a_copy_does_not() -> None:
    copied = RepairResult(**LINK)
    assert copied.to_json() == LINK
    repaired = RepairResult(**LINK, differences=Differences(missing=2, extra=0, changed=1))
    assert list(repaired.to_json()) == [*LINK, "missing", "extra", "changed"]
    assert repaired.to_json() == LINK | {"missing": 2, "extra": 0, "changed": 1}


def test_detach_keys_and_caught_up() -> None:
    result = DetachResult(3, 1, True, True, 0, 0, caught_up=False)
    assert list(result.to_json()) == [
        "local_list",
        "remote_list",
        "leader_reachable",
        "slot_dropped",
        "purged_dossiers",
        "kept_in_transit",
        "caught_up",
    ]


def test_setup_keys_in_json() -> None:
    result = SetupResult(
        "subscriber",
        "site-b",
        "arcface",
        created=False,
        token_rotated=False,
        face_model_changed=False,
        upgraded_lists=(3,),
        upgrade_pending=(UpgradePending(4, "the Leader is down"),),
        warnings=("w",),
    )
    assert json.loads(json.dumps(result.to_json())) == {
        "role": "subscriber",
        "node_name": "site-b",
        "face_model": "arcface",
        "created": False,
        "token_rotated": False,
        "face_model_changed": False,
        "upgraded_lists": [3],
        "upgrade_pending": [{"local_list": 4, "error": "the Leader is down"}],
        "new_identity": False,
        "warnings": ["w"],
        "decoding": None,
    }
