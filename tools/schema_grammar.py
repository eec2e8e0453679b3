"""JSON schema -> EBNF rules (xgrammar's dialect, like GBNF), for grammars that embed schema-valid JSON.

The subset handled (object, string, integer, number, boolean, null, array with ``minItems`` /
``maxItems``, enum, const, anyOf / oneOf, ``type`` lists, local ``$ref``) covers tool parameters;
any other schema becomes a generic JSON value, and keywords outside it (``pattern``, ``minLength``,
``minimum``, ``format``, ...) are not enforced: the tool's own argument validation reports those.
Objects are strict, as xgrammar's ``strict_mode``: no keys beyond ``properties`` unless
``additionalProperties`` allows them and there are no ``properties``. Properties are emitted in
schema order with fixed ``", "`` / ``": "`` separators (``json.dumps``' own): a tight grammar
leaves a small model fewer ways to wander, and the output is still plain JSON.

JSON strings are unbounded (``json_char*``): a bounded repetition of an alternation rule
(``json_char{0,1000}``) measured 5 s to compile and 160-210 ms per token mask with xgrammar 0.2.8
on SmolLM2's vocabulary, against 0.01 ms unbounded. For the same reason strings take no ``\\uXXXX``
escape (the character itself is written): offering one measured ~50 ms per mask inside a string.
"""

from __future__ import annotations

import json
import re
from typing import Any

JSON_RULES = r"""
json_value ::= json_object | json_array | json_string | json_number | json_bool | "null"
json_object ::= "{" "}" | "{" json_string ": " json_value (", " json_string ": " json_value)* "}"
json_array ::= "[" "]" | "[" json_value (", " json_value)* "]"
json_string ::= "\"" json_char* "\""
json_char ::= [^"\\\x00-\x1f] | "\\" ["\\/bfnrt]
json_integer ::= "-"? ("0" | [1-9] [0-9]{0,17})
json_number ::= json_integer ("." [0-9]{1,16})? ([eE] [+\-]? [0-9]{1,3})?
json_bool ::= "true" | "false"
"""
"""The generic JSON rules every compiled schema may refer to; append them once to the grammar."""


def literal(text: str) -> str:
    """An EBNF string literal matching ``text`` exactly."""
    return json.dumps(text)


def rule_name(*parts: str) -> str:
    """A valid rule name from free-form parts (tool and property names)."""
    return "_".join(re.sub(r"[^A-Za-z0-9]", "_", p) for p in parts if p)


class SchemaGrammar:
    """Collects EBNF rules with unique names; ``value`` turns one JSON schema into an expression."""

    def __init__(self) -> None:
        self.rules: dict[str, str] = {}
        """Rule name -> body, in the order added."""
        self._root: dict[str, Any] = {}
        self._refs: dict[str, str] = {}

    def add(self, name: str, body: str) -> str:
        """Add a rule, renamed ``name_2``, ``name_3``... when taken; returns the name used."""
        base, i = name, 1
        while name in self.rules:
            i += 1
            name = f"{base}_{i}"
        self.rules[name] = body
        return name

    def document(self, schema: dict[str, Any], name: str) -> str:
        """The expression for a whole schema document: its local ``$ref`` resolve against it."""
        self._root, self._refs = schema, {}
        return self.value(schema, name)

    def value(self, schema: Any, name: str) -> str:
        """Return an EBNF expression for ``schema`` (adding helper rules under ``name``)."""
        if not isinstance(schema, dict) or not schema:
            return "json_value"
        if "$ref" in schema:
            return self._ref(schema["$ref"], name)
        if "const" in schema:
            return literal(json.dumps(schema["const"]))
        if "enum" in schema:
            return "(" + " | ".join(literal(json.dumps(v)) for v in schema["enum"]) + ")"
        for key in ("anyOf", "oneOf"):
            if key in schema:
                alts = [self.value(s, f"{name}_{i}") for i, s in enumerate(schema[key])]
                return "(" + " | ".join(alts) + ")"
        kind = schema.get("type")
        if isinstance(kind, list):
            alts = [self.value({**schema, "type": k}, f"{name}_{k}") for k in kind]
            return "(" + " | ".join(alts) + ")"
        simple = {"string": "json_string", "integer": "json_integer", "number": "json_number",
                  "boolean": "json_bool", "null": '"null"'}  # fmt: skip
        if kind in simple:
            return simple[kind]
        if kind == "array":
            return self._array(schema, name)
        if kind == "object" or "properties" in schema:
            return self._object(schema, name)
        return "json_value"

    def _ref(self, ref: Any, name: str) -> str:
        if ref in self._refs:  # seen (or being compiled: a recursive schema refers to its own rule)
            return self._refs[ref]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise ValueError(f"$ref {ref!r} is not local; only refs into the same schema (#/...) are supported")
        target: Any = self._root
        for part in filter(None, ref[1:].split("/")):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, dict) or part not in target:
                raise ValueError(f"$ref {ref!r} points at nothing in the schema")
            target = target[part]
        rule = self._refs[ref] = self.add(rule_name(name, "ref"), "")
        self.rules[rule] = self.value(target, rule)
        return rule

    def _array(self, schema: dict[str, Any], name: str) -> str:
        item = self.value(schema.get("items", {}), f"{name}_item")
        lo, hi = int(schema.get("minItems", 0)), schema.get("maxItems")
        first = max(lo, 1)
        head = " ".join([item] + [f'", " {item}'] * (first - 1))
        extra = "*" if hi is None else f"{{0,{max(0, int(hi) - first)}}}"
        body = f'"[" {head} (", " {item}){extra} "]"'
        if lo == 0:
            body = f'"[" "]" | {body}'
        return self.add(name, body)

    def _object(self, schema: dict[str, Any], name: str) -> str:
        props: dict[str, Any] = schema.get("properties") or {}
        if not props:
            # ``additionalProperties`` True or a schema (even ``{}``) opens the object; absent means closed.
            closed = schema.get("additionalProperties", False) is False
            return self.add(name, '"{" "}"') if closed else "json_object"
        required = [k for k in props if k in set(schema.get("required", []))]
        optional = [k for k in props if k not in required]
        members = {k: f"{literal(json.dumps(k) + ': ')} {self.value(v, f'{name}_{k}')}" for k, v in props.items()}
        # Required properties in order; each optional one may follow, in order. Deterministic order
        # keeps the grammar small; a model that wants another order cannot, which costs nothing here.
        parts = [members[k] for k in required]
        body = ' ", " '.join(parts)
        tail = " ".join(f'(", " {members[k]})?' if parts else f"({members[k]})?" for k in optional)
        if not parts and optional:
            # No required property: any in-order subset; the first one present takes no comma.
            alts = []
            for i, first in enumerate(optional):
                rest = " ".join(f'(", " {members[k]})?' for k in optional[i + 1 :])
                alts.append(f"{members[first]} {rest}".strip())
            return self.add(name, '"{" (' + " | ".join(alts) + ')? "}"')
        return self.add(name, f'"{{" {body} {tail} "}}"')


__all__ = ["JSON_RULES", "SchemaGrammar", "literal", "rule_name"]
