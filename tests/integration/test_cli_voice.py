"""One voice for errors against real clusters (docs/cli.md#errors): a refusal, a usage error of
the command's own and an unreachable Leader are `{"code", "message"}` on stdout with --json,
the same `error:` line on stderr, the same exit code, and no secret in either."""

from __future__ import annotations

from pgsync_dossier.clusters import free_port
from tests.harness import Site, add_dossiers, attach_args, make_list


def test_a_refusal_in_json_and_in_text(sites: dict[str, Site]) -> None:
    sub = sites["subscriber_a"]
    says = "list 999 is not a replica: there is nothing to detach"
    refused = sub.cli("detach", "999", "--json")
    assert refused.exit_code == 3
    assert refused.json() == {"code": "not_a_replica", "message": says}
    assert refused.stderr == f"error: {says}\n"
    text = sub.cli("detach", "999")
    assert (text.exit_code, text.stdout, text.stderr) == (3, "", f"error: {says}\n")


def test_attach_refused_unreachable_or_misused_answers_json(sites: dict[str, Site]) -> None:
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, busy, empty = make_list(leader.node, "L"), make_list(sub.node, "T busy"), make_list(sub.node, "T")
    add_dossiers(sub.node, busy, 1)
    not_empty = sub.cli(*attach_args(leader.leader_url, remote, busy), "--json")
    assert not_empty.exit_code == 3, not_empty.stderr
    assert not_empty.json()["code"] == "list_not_empty" and "it must be empty" in not_empty.json()["message"]
    assert not_empty.stderr == f"error: {not_empty.json()['message']}\n"
    # The installed entry point, as a script runs it: a Leader that is not there.
    url = f"postgresql://u:secret-pw@127.0.0.1:{free_port()}/dossiers"
    gone = sub.run(*attach_args(url, remote, empty), "--json")
    assert gone.exit_code == 4, gone.stderr
    assert gone.json()["code"] == "unreachable" and "cannot reach" in gone.json()["message"]
    assert gone.stderr.startswith("error: cannot reach") and "Traceback" not in gone.stderr
    assert "secret-pw" not in gone.stdout + gone.stderr
    # A usage error found by the command itself, and one found by click after the command's name.
    unconfirmed = sub.cli("repair", str(empty), "--json")
    assert unconfirmed.exit_code == 2 and unconfirmed.json()["code"] == "usage"
    assert "pass --confirm" in unconfirmed.json()["message"] and unconfirmed.stderr.startswith("error: ")
    bad = sub.cli("attach", "--remote-list", str(remote), "--remote-url", url, "--local-list", "T", "--json")
    assert bad.exit_code == 2 and bad.json() == {
        "code": "usage",
        "message": "--local-list must be a list id, a whole number from 1 to 2147483647, not 'T'",
    }
    assert "secret-pw" not in bad.stdout + bad.stderr
    assert not sub.node.execute("SELECT * FROM pgsync.link")  # nothing was attached
