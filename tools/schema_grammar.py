"""JSON schema -> EBNF rules (xgrammar's dialect, like GBNF), for grammars that embed schema-valid JSON.

The subset handled (object, string, integer, number, boolean, null, array with ``minItems`` /
``maxItems``, enum, const, anyOf / oneOf, ``type`` lists, local ``$ref``) covers tool parameters;
any other schema becomes a generic JSON value. Value constraints are enforced too, so a small model
cannot write an argument its tool would refuse (``constrain_values=False`` turns them off):

* string ``pattern``: the regex subset of ``interleaf.tools.regex_ebnf`` (matched whole); a pattern
  outside it leaves the string unconstrained;
* string ``minLength`` / ``maxLength`` (without ``pattern``): a bounded run of plain characters
  (no escapes inside a bounded string; a bounded alternation is what is slow, see below);
* integer ``minimum`` / ``maximum`` / ``exclusiveMinimum`` / ``exclusiveMaximum``: exactly, digit by
  digit; number: only the sign (no ``-`` when the minimum is >= 0).

Free-text strings can be grounded in the conversation (given per turn, like grounded numbers):

* a string marked ``"x-grounded": "question"`` (``GROUNDED_KEY``; e.g. a search query) is one of
  ``grounded_spans``, short runs of the question's words (``interleaf.tools.question_spans``), as a
  word trie: a small model copying a name into a query cannot misspell it;
* a string with ``"format": "uri"`` is one of ``grounded_urls``, the urls the conversation wrote.

Both are opt-in by the schema: a plain string (the python tool's ``code``) stays free text.
Other keywords (``format`` other than ``uri``, ``multipleOf``, ``pattern`` with a length, ...) are
not enforced: the tool's own argument validation reports those.
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
import math
import re
from typing import Any

from interleaf.tools.grounding import ground_pattern_ebnf, grounded_values
from interleaf.tools.regex_ebnf import RegexNotSupported, integer_range_ebnf, regex_to_ebnf
from interleaf.tools.text_grounding import spans_ebnf

GROUNDED_KEY = "x-grounded"
"""Schema keyword marking a string argument as grounded; its one value, ``"question"``: the string
is a short span of the question's words (``SchemaGrammar.grounded_spans``)."""

JSON_RULES = r"""
json_value ::= json_object | json_array | json_string | json_number | json_bool | "null"
json_object ::= "{" "}" | "{" json_string ": " json_value (", " json_string ": " json_value)* "}"
json_array ::= "[" "]" | "[" json_value (", " json_value)* "]"
json_string ::= "\"" json_char* "\""
json_char ::= [^"\\\x00-\x1f] | "\\" ["\\/bfnrt]
json_integer ::= "-"? json_natural
json_natural ::= "0" | [1-9] [0-9]{0,17}
json_number ::= json_integer json_fraction
json_fraction ::= ("." [0-9]{1,16})? ([eE] [+\-]? [0-9]{1,3})?
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

    def __init__(
        self,
        *,
        constrain_values: bool = True,
        grounded_numbers: tuple[str, ...] | None = None,
        grounded_expressions: tuple[str, ...] = (),
        grounded_spans: tuple[str, ...] | None = None,
        grounded_urls: tuple[str, ...] | None = None,
    ) -> None:
        self.constrain_values = constrain_values
        """Enforce ``pattern``, lengths and numeric ranges (False: types and structure only)."""
        self.grounded_numbers = grounded_numbers
        """With ``constrain_values``: the numbers (a multiset) that numeric literals in patterned
        strings and integer / number values are drawn from (``interleaf.tools.grounding``); None:
        any number."""
        self.grounded_expressions = grounded_expressions
        """With ``grounded_numbers``: written-out arithmetic a patterned string may hold only whole."""
        self.grounded_spans = grounded_spans
        """With ``constrain_values``: the texts a string marked ``GROUNDED_KEY: "question"`` may be;
        None or empty: free text."""
        self.grounded_urls = grounded_urls
        """With ``constrain_values``: the texts a ``format: uri`` string may be; None or empty: free text."""
        self._grounded_rules: dict[str, str] = {}
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
        if self.constrain_values and kind in ("string", "integer", "number"):
            constrained = self._constrained_scalar(kind, schema, name)
            if constrained is not None:
                return constrained
        simple = {"string": "json_string", "integer": "json_integer", "number": "json_number",
                  "boolean": "json_bool", "null": '"null"'}  # fmt: skip
        if kind in simple:
            return simple[kind]
        if kind == "array":
            return self._array(schema, name)
        if kind == "object" or "properties" in schema:
            return self._object(schema, name)
        return "json_value"

    def _constrained_scalar(self, kind: str, schema: dict[str, Any], name: str) -> str | None:
        """The rule for a string / integer / number with value constraints; None when it has none."""
        if kind == "string":
            if schema.get(GROUNDED_KEY) == "question" and self.grounded_spans:
                return self._grounded_text("spans", self.grounded_spans)
            if schema.get("format") == "uri" and self.grounded_urls:
                return self._grounded_text("urls", self.grounded_urls)
            if isinstance(schema.get("pattern"), str):
                if self.grounded_numbers is not None:
                    grounded = self._grounded_string(schema["pattern"], name)
                    if grounded is not None:
                        return grounded
                try:
                    return self.add(name, f'"\\"" {regex_to_ebnf(schema["pattern"], json_string=True)} "\\""')
                except RegexNotSupported:
                    return None  # left to the tool's own validation
            lo, hi = schema.get("minLength"), schema.get("maxLength")
            if lo is None and hi is None:
                return None
            bounds = f"{{{int(lo or 0)},{'' if hi is None else int(hi)}}}"
            return self.add(name, f'"\\"" [^"\\\\\\x00-\\x1f]{bounds} "\\""')
        lo, hi = _bound(schema, "minimum", "exclusiveMinimum", 1), _bound(schema, "maximum", "exclusiveMaximum", -1)
        if self.grounded_numbers is not None:
            values = grounded_values(self.grounded_numbers, integer=kind == "integer", lo=lo, hi=hi)
            if values:
                return self.add(name, " | ".join(literal(v) for v in values))
        if kind == "integer":
            if lo is None and hi is None:
                return None
            lo_i = None if lo is None else math.ceil(lo)
            hi_i = None if hi is None else math.floor(hi)
            return self.add(name, integer_range_ebnf(lo_i, hi_i))
        if lo is not None and lo >= 0:  # number: the sign only
            return self.add(name, "json_natural json_fraction")
        return None

    def _grounded_string(self, pattern: str, name: str) -> str | None:
        """The rule for a patterned string whose numbers are grounded; None when the pattern's shape
        does not allow it (``ground_pattern_ebnf``)."""
        prefix = self.add(name, '""')  # reserves a free name for the rule and its helpers
        rules = ground_pattern_ebnf(pattern, self.grounded_numbers or (), prefix, self.grounded_expressions)
        if rules is None:
            del self.rules[prefix]
            return None
        taken = [k for k in rules if k != prefix and k in self.rules]
        if taken:
            raise ValueError(f"grounded rules {taken} clash with existing rule names")
        self.rules.update(rules)
        return prefix

    def _grounded_text(self, kind: str, texts: tuple[str, ...]) -> str:
        """The rule for a JSON string that is exactly one of ``texts`` (a word trie), built once per
        grammar and shared by every argument grounded the same way. Texts that need a JSON escape
        are left out: the trie writes them verbatim inside the quotes."""
        if kind not in self._grounded_rules:
            plain = [t for t in texts if t and not re.search(r'["\\\x00-\x1f]', t)]
            if not plain:
                self._grounded_rules[kind] = "json_string"
                return "json_string"
            prefix = self.add(f"grounded_{kind}", '""')  # reserves a free name for the trie's rules
            trie = spans_ebnf(plain, f"{prefix}_t")
            taken = [k for k in trie if k in self.rules]
            if taken:
                raise ValueError(f"grounded rules {taken} clash with existing rule names")
            self.rules.update(trie)
            self.rules[prefix] = f'"\\"" {prefix}_t "\\""'
            self._grounded_rules[kind] = prefix
        return self._grounded_rules[kind]

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


def _bound(schema: dict[str, Any], inclusive: str, exclusive: str, step: int) -> float | None:
    """The tighter of an inclusive and an exclusive bound (an exclusive integer bound moves by ``step``)."""
    values = []
    if isinstance(schema.get(inclusive), int | float) and not isinstance(schema.get(inclusive), bool):
        values.append(schema[inclusive])
    ex = schema.get(exclusive)
    if isinstance(ex, int | float) and not isinstance(ex, bool):
        values.append(ex + step if isinstance(ex, int) and schema.get("type") == "integer" else ex)
    if not values:
        return None
    return max(values) if step > 0 else min(values)


__all__ = ["GROUNDED_KEY", "JSON_RULES", "SchemaGrammar", "literal", "rule_name"]
