"""Colander building blocks shared by the API's schemas."""

from __future__ import annotations

import colander


class StrictString(colander.String):
    """A string that refuses numbers, lists and objects rather than turning them into text."""

    def deserialize(self, node, cstruct):
        if cstruct is not colander.null and not isinstance(cstruct, str):
            raise colander.Invalid(node, f"must be a string, not {type(cstruct).__name__}")
        return super().deserialize(node, cstruct)


class PathString(StrictString):
    """An absolute path on a cluster, as the OpenAPI document describes it.

    The views check it further (files.validate_path), each with its own messages.
    """

    json_schema = {"pattern": r"^/[^\x00]*$"}  # absolute, no NUL


class StrictSchema(colander.MappingSchema):
    """A mapping that refuses fields it does not know: a typo is an error, not a silent no-op."""

    def schema_type(self, **kw):
        return colander.Mapping(unknown="raise")
