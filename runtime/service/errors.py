"""The service's error answers and their place in the OpenAPI document.

Every route can be refused at the front door (``AccessGuard``: 400 Host, 401 token; 413 body and 415
media type on state-changing methods; 405 with ``Allow`` for a method no route serves at the path, which
no operation of the document has) and answers 503 while Redis is unreachable; a route with
parameters answers 422 as ``InvalidRequest``. ``document_errors`` adds these to every operation of
the document, so routes declare only their own codes (404, 409) — including routers added later
(``app.include_router``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class ErrorBody(BaseModel):
    """An error answer (400, 401, 404, 409, 413, 415, 503)."""

    detail: str
    """What was wrong and what to do."""


class FieldError(BaseModel):
    """One problem of a refused request."""

    field: str
    """The field's dotted name (``n``, ``backend_urls.0``; ``body`` for the body as a whole: not JSON, not
    UTF-8, nested too deeply, not an object)."""
    value: Any = None
    """The value as sent (a text longer than 200 characters cut, ``…`` marking the cut; other long or
    non-JSON values as their text, cut likewise; a lone surrogate as a ``\\udXXX`` escape)."""
    problem: str
    """What is wrong with it, and the rule or the allowed values."""


class InvalidRequest(BaseModel):
    """A 422 answer: every problem of the request at once."""

    error: str
    """All problems in one line."""
    fields: list[FieldError]
    """Each problem."""


_WHY = {
    400: "Host header not served here",
    401: "missing or wrong bearer token (when the server has one)",
    404: "no such job",
    409: "job_id already exists",
    413: "request body over the server's limit",
    415: "a body without Content-Type: application/json (a POST without a body needs none, unless it comes "
    "from a web page: an Origin header)",
    503: "Redis unreachable",
}
UNREADABLE_WHY = (
    "a stored trajectory of the job cannot be read by this version (written by another one, or altered in Redis); "
    "the detail names the episode, and nothing stored was changed"
)
_STATE_CHANGING = ("post", "put", "patch", "delete")


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def error_responses(*codes: int, why: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """A route's own error codes (404, 409, ...) for its ``responses=``; ``why``: the route's own
    description of a code, where the usual one (``_WHY``) does not fit."""
    why = why or {}
    return {code: {"model": ErrorBody, "description": why.get(code) or _WHY.get(code, "error")} for code in codes}


def document_errors(doc: dict[str, Any], *, open_paths: tuple[str, ...] = ()) -> dict[str, Any]:
    """Add the answers every route can give to each operation of ``doc`` (in place; returned).
    ``open_paths`` need no token (no 401) and keep a 503 they declare themselves."""
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, FieldError, InvalidRequest):
        schemas.setdefault(model.__name__, model.model_json_schema(ref_template="#/components/schemas/{model}"))
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    for path, operations in doc.get("paths", {}).items():
        for method, op in operations.items():
            responses = op.setdefault("responses", {})
            codes = [400, 503] if path in open_paths else [400, 401, 503]
            if method in _STATE_CHANGING:
                codes += [413, 415]
            for code in codes:
                responses.setdefault(str(code), {"description": _WHY[code], "content": _json("ErrorBody")})
            if "422" in responses:
                responses["422"] = {
                    "description": "invalid field(s), each named with its value and the rule; a body that is not "
                    "JSON (malformed, not UTF-8, nested too deeply) is the field 'body', with the parser's message "
                    "and position",
                    "content": _json("InvalidRequest"),
                }
    return doc


__all__ = ["ErrorBody", "FieldError", "InvalidRequest", "document_errors", "error_responses"]
