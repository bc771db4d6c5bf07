"""Fault points and blinds: a blind is armed like a point but is not one (the fault suite kills
at every point of POINTS), verify reports a list equal only when its blind is armed, and the
soak counts every way verify's report departs from its SQL oracle's verdict (a blinded verify
among them)."""

from __future__ import annotations

import json
import random

import pytest

from bench.sites import Timed
from pgsync_dossier import faults, verify
from tests import oracle
from tests.soak import Replica, Soak

FOUND = verify.VerifyRow(
    1,
    2,
    dossiers=49,
    faces=50,
    leader_dossiers=50,
    leader_faces=50,
    match=False,
    missing=2,
    extra=0,
    changed=1,
)


def test_the_blinds_are_not_kill_points() -> None:
    assert faults.VERIFY_BLIND in faults.BLINDS
    assert not set(faults.BLINDS) & set(faults.POINTS)


def test_a_blind_is_armed_only_through_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    assert not faults.blinded(faults.VERIFY_BLIND)
    monkeypatch.setenv(faults.FAULT_ENV, "copy.copied")
    assert not faults.blinded(faults.VERIFY_BLIND)
    monkeypatch.setenv(faults.FAULT_ENV, f"copy.copied,{faults.VERIFY_BLIND}")
    assert faults.blinded(faults.VERIFY_BLIND)


def test_an_armed_blind_does_not_kill_at_a_point(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(faults.FAULT_ENV, faults.VERIFY_BLIND)
    for name in faults.POINTS:
        faults.point(name)  # would kill this process if the blind were taken for a point


def test_only_a_blind_can_be_asked_about() -> None:
    with pytest.raises(ValueError, match="not a blind"):
        faults.blinded("copy.copied")


def test_verify_reports_what_it_found_unless_blinded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    assert verify._as_reported(FOUND) == FOUND
    monkeypatch.setenv(faults.FAULT_ENV, faults.VERIFY_BLIND)
    blind = verify._as_reported(FOUND)
    assert blind.match is True
    assert (blind.missing, blind.extra, blind.changed) == (0, 0, 0)
    assert (blind.dossiers, blind.faces) == (50, 50)


# -- the soak judges verify against its oracle: a blinded verify must not pass ---------------
def _soak() -> Soak:
    return Soak(sites=None, rng=random.Random(0), replicas=[])  # type: ignore[arg-type]  # noqa: S311


def _verdict(*equal: bool) -> oracle.Convergence:
    """The oracle's verdict on replicas 1, 2, ... of Leader lists 11, 12, ..."""
    damaged = oracle.TableDiff(missing=["d1"])
    lists = [
        oracle.ListComparison(
            10 + n,
            n,
            {"dossier": 1, "dossier_face": 0},
            {"dossier": 1 if same else 0, "dossier_face": 0},
            {"dossier": oracle.TableDiff() if same else damaged, "dossier_face": oracle.TableDiff()},
        )
        for n, same in enumerate(equal, start=1)
    ]
    return oracle.Convergence(lists, [], [])


def _verify(exit_code: int, *rows: tuple[int, int, bool | None]) -> Timed:
    out = [
        {"local_list": local, "remote_list": remote, "match": match, "error": None}
        for local, remote, match in rows
    ]
    return Timed(0.1, exit_code, json.dumps(out), "")


REPLICA = Replica("subscriber", None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verdict", "verified", "disagreements"),
    [
        (_verdict(True, True), _verify(0, (1, 11, True), (2, 12, True)), 0),
        (_verdict(True, False), _verify(1, (1, 11, True), (2, 12, False)), 0),
        (_verdict(True, False), _verify(0, (1, 11, True), (2, 12, True)), 1),  # blinded
        (_verdict(True, True), _verify(0, (1, 11, True)), 1),  # a list left out
        (_verdict(True), _verify(0, (1, 11, True), (7, 17, True)), 1),  # a list not attached
        (_verdict(True), _verify(0, (1, 12, True)), 1),  # against another Leader list
        (_verdict(True), _verify(1, (1, 11, True)), 1),  # an exit its rows do not explain
        (_verdict(True), _verify(0, (1, 11, None)), 2),  # not vouched for, and exit 0 all the same
        (_verdict(True), Timed(0.1, 0, "not json", ""), 1),
        (_verdict(True), Timed(0.1, 0, '{"local_list": 1}', ""), 1),
    ],
)
def test_the_soak_counts_each_disagreement_of_verify_with_the_oracle(
    verdict: oracle.Convergence, verified: Timed, disagreements: int
) -> None:
    soak = _soak()
    soak.check_verify(REPLICA, verdict, verified)
    assert soak.ledger["verify disagreed with the oracle"] == disagreements, soak.disagreements
    assert len(soak.disagreements) == disagreements
