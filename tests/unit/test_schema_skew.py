"""Which schema skews a stream absorbs (a column list) and which pause it, with the node to
migrate: decided from the two nodes' columns alone."""

from __future__ import annotations

from pgsync_dossier.schema_skew import Column, Columns, common, message, skew

TEXT = Column("text", False, False)
REQUIRED = Column("text", True, False)
UUID = Column("uuid", True, False)


def schema(**extra: Column) -> Columns:
    return {
        "dossier": {"id": UUID, "dossier_list_id": UUID, "name": TEXT, **extra},
        "dossier_face": {"id": UUID},
    }


def test_the_same_schema_fits() -> None:
    assert skew(schema(), schema(), column_lists=True) is None


def test_a_column_only_the_leader_has_is_not_published() -> None:
    assert skew(schema(nickname=TEXT), schema(), column_lists=True) is None
    assert common(schema(nickname=TEXT), schema())["dossier"] == ["id", "dossier_list_id", "name"]


def test_without_column_lists_it_pauses_until_this_subscriber_migrates() -> None:
    found = skew(schema(nickname=TEXT), schema(), column_lists=False)
    assert found is not None and found.migrate == "subscriber"
    assert "dossier.nickname" in found.reasons[0]


def test_a_nullable_column_only_the_subscriber_has_fits() -> None:
    assert skew(schema(), schema(nickname=TEXT), column_lists=True) is None
    assert skew(schema(), schema(badge=Column("text", True, True)), column_lists=True) is None  # a default


def test_a_required_column_only_the_subscriber_has_waits_for_the_leader() -> None:
    found = skew(schema(), schema(badge=REQUIRED), column_lists=True)
    assert found is not None and found.migrate == "leader"
    line = message(found, "hq", ("9000", "0.2.0"), "9001")
    assert "revision 9000, pgsync-dossier 0.2.0" in line and "revision 9001" in line
    assert line.endswith(
        "run pgsync-dossier migrate on the Leader (hq) (after upgrading pgsync-dossier there if need be), "
        "then sync again"
    )
    assert "\n" not in line


def test_a_retyped_column_names_the_older_node() -> None:
    found = skew(schema(name=Column("character varying(80)", False, False)), schema(), column_lists=True)
    assert found is not None and found.migrate == "older"
    assert "dossier.name is character varying(80) there, text here" in found.reasons


def test_the_leader_knows_the_columns_the_copier_knows() -> None:
    """What a Subscriber of an older version gets published (pgsync.known_columns) is what this
    version reads and writes (copier.COLUMNS): one list, kept in two languages."""
    import re

    from pgsync_dossier.copier import COLUMNS
    from pgsync_dossier.resources import sql_dir

    text = (sql_dir() / "leader_api.sql").read_text()
    body = text[text.index("FUNCTION pgsync.known_columns") :]
    for table, columns in COLUMNS.items():
        found = re.search(rf"WHEN '{table}' THEN ARRAY\[([^\]]*)\]", body)
        assert found is not None
        assert tuple(re.findall(r"'([a-z_]+)'", found.group(1))) == columns


def test_a_column_required_here_and_optional_there_waits_for_the_leader() -> None:
    found = skew(schema(badge=TEXT), schema(badge=REQUIRED), column_lists=True)
    assert found is not None and found.migrate == "leader"
    assert skew(schema(badge=REQUIRED), schema(badge=REQUIRED), column_lists=True) is None
