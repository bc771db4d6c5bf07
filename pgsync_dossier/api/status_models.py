"""The HTTP API's view of a status row, derived from `status.StatusRow`: the fields, their
types, their order and their descriptions are the dataclass's, so `status --json`, the API's
bodies and its OpenAPI document cannot drift apart."""

from __future__ import annotations

import dataclasses
import typing
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, create_model
from pydantic.fields import FieldInfo

from pgsync_dossier.status import StatusRow

#: Row fields whose name a pydantic model cannot take (it would shadow BaseModel's method):
#: the model names them otherwise and keeps the row's name as the JSON key (alias).
_SHADOWED = {"copy": "copy_progress"}


def _model_fields() -> dict[str, tuple[Any, FieldInfo]]:
    hints = typing.get_type_hints(StatusRow)
    made: dict[str, tuple[Any, FieldInfo]] = {}
    for column in dataclasses.fields(StatusRow):
        name = _SHADOWED.get(column.name, column.name)
        made[name] = (
            hints[column.name],
            Field(
                description=column.metadata.get("description"),
                alias=column.name if name != column.name else None,
            ),
        )
    return made


if TYPE_CHECKING:  # a model made at run time: to the type checker, a model like any other
    _StatusFields = BaseModel
else:
    _StatusFields = create_model("_StatusFields", __module__=__name__, **_model_fields())


class Link(_StatusFields):
    """One link, as `status --json` shows it."""

    @classmethod
    def of(cls, row: StatusRow) -> Link:
        return cls.model_validate(row.as_json())
