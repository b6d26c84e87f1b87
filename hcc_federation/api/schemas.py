"""Colander building blocks shared by the API's schemas."""

from __future__ import annotations

import colander
from cornice.validators import colander_querystring_validator

from ..errors import InvalidArgument


class StrictString(colander.String):
    """A string that refuses numbers, lists and objects rather than turning them into text.

    It also refuses a lone surrogate (JSON allows the escape ``\\ud800``; UTF-8 cannot hold it):
    the database, paramiko's argv and sbatch's stdin all encode to UTF-8 and raised
    UnicodeEncodeError, a 500. Passwords (PasswordString) are left to the directory, whose rules
    for them (SASLprep) decide.
    """

    unicode_only = True

    def deserialize(self, node, cstruct):
        if cstruct is not colander.null and not isinstance(cstruct, str):
            raise colander.Invalid(node, f"must be a string, not {type(cstruct).__name__}")
        if self.unicode_only and isinstance(cstruct, str):
            try:
                cstruct.encode("utf-8")
            except UnicodeEncodeError:
                raise colander.Invalid(node, "must be Unicode text (it holds a lone surrogate)") from None
        return super().deserialize(node, cstruct)


class PasswordString(StrictString):
    """A password: any string; what the directory accepts is the directory's business."""

    unicode_only = False


class PathString(StrictString):
    """An absolute path on a cluster, as the OpenAPI document describes it.

    The views check it further (files.validate_path), each with its own messages.
    """

    json_schema = {"pattern": r"^/[^\x00]*$"}  # absolute, no NUL


class StrictSchema(colander.MappingSchema):
    """A mapping that refuses fields it does not know: a typo is an error, not a silent no-op."""

    def schema_type(self, **kw):
        return colander.Mapping(unknown="raise")


def querystring_only(request) -> dict:
    """Cornice's input for ``colander_querystring_validator`` (its ``deserializer=``) that leaves
    the body alone.

    Cornice's own ``extract_cstruct`` reads the whole body (``request.body`` or ``request.POST``):
    fatal for a streamed upload, whose query string says where the body goes. A name given twice is
    an error rather than a guess at which one was meant.
    """
    params: dict[str, str] = {}
    try:
        items = list(request.GET.items())
    except UnicodeDecodeError:
        raise InvalidArgument("the query string is not valid UTF-8", field="path") from None
    for key, value in items:
        if key in params:
            raise InvalidArgument(f"{key} is given more than once", field=key)
        params[key] = value
    return {"querystring": params, "path": request.matchdict}


def querystring(schema: colander.SchemaNode) -> dict:
    """A Cornice view's arguments that check the query string with ``schema`` and never read the body
    (streamed uploads and downloads take their path from the query string)."""
    return {
        "schema": schema,
        "validators": (colander_querystring_validator,),
        "deserializer": querystring_only,
    }
