"""A small GraphQL engine for fakes: parse a document, check it against a schema, run it.

Enough of the spec for what our code sends (one operation with variables; fields with
arguments and aliases; inline fragments; lists and non-null with null propagation), with
the error shapes GitHub's graphql-ruby answers, so a misspelt field, a missing argument
or a variable of the wrong type fails in a test as it would against GitHub. Named
fragments and directives are not supported: a document using them is refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]


# --- schema --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldDef:
    type: str  # "ProjectV2!", "[ProjectV2Item]", "String"
    args: Mapping[str, str] = field(default_factory=dict)  # name -> type; "T!" is required


@dataclass(frozen=True)
class Schema:
    objects: Mapping[str, Mapping[str, FieldDef]]  # object, interface and union types
    abstract: Mapping[str, frozenset[str]]  # interfaces and unions -> their object types
    inputs: Mapping[str, Mapping[str, str]]  # input object types: field -> type
    leaves: frozenset[str]  # scalars and enums

    def possible(self, type_name: str) -> frozenset[str]:
        return self.abstract.get(type_name, frozenset({type_name}))


def named(type_ref: str) -> str:
    """`[ProjectV2Item!]!` -> `ProjectV2Item`."""
    return type_ref.strip("[]!")


# --- documents -----------------------------------------------------------------------------------


class GraphQLSyntaxError(Exception):
    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line, self.column = line, column


@dataclass(frozen=True)
class Var:
    name: str


@dataclass
class Field:
    name: str
    alias: str
    args: dict[str, Any]
    selections: list[Field | Fragment] | None
    line: int
    column: int


@dataclass
class Fragment:
    on: str | None
    selections: list[Field | Fragment]
    line: int
    column: int


@dataclass
class Operation:
    kind: str  # query | mutation
    name: str | None
    variables: dict[str, str]  # $name -> type
    defaults: dict[str, Any]
    selections: list[Field | Fragment]


_TOKEN = re.compile(
    r"""(?P<skip>[\s,\ufeff]+|\#[^\n]*)
      |(?P<spread>\.\.\.)
      |(?P<punct>[!$():=@\[\]{}|])
      |(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
      |(?P<name>[_A-Za-z][_0-9A-Za-z]*)
      |(?P<string>"(?:[^"\\\n]|\\.)*")""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str
    line: int
    column: int


def _tokens(source: str) -> list[_Token]:
    found, position, line, line_start = [], 0, 1, 0
    while position < len(source):
        match = _TOKEN.match(source, position)
        column = position - line_start + 1
        if match is None:
            raise GraphQLSyntaxError(
                f'Parse error on "{source[position]}" at [{line}, {column}]', line, column
            )
        kind = match.lastgroup or "skip"
        if kind != "skip":
            found.append(_Token(kind, match.group(), line, column))
        newlines = match.group().count("\n")
        if newlines:
            line += newlines
            line_start = position + match.group().rfind("\n") + 1
        position = match.end()
    return found


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = _tokens(source)
        self.index = 0

    def peek(self, text: str | None = None) -> _Token | None:
        token = self.tokens[self.index] if self.index < len(self.tokens) else None
        if token is None or (text is not None and token.text != text):
            return None
        return token

    def take(self, text: str | None = None, kind: str | None = None) -> _Token:
        token = self.peek()
        if token is None:
            last = self.tokens[-1] if self.tokens else _Token("", "", 1, 1)
            raise GraphQLSyntaxError("Unexpected end of document", last.line, last.column)
        if (text is not None and token.text != text) or (kind is not None and token.kind != kind):
            where = f"[{token.line}, {token.column}]"
            raise GraphQLSyntaxError(
                f'Parse error on "{token.text}" at {where}', token.line, token.column
            )
        self.index += 1
        return token

    def operations(self) -> list[Operation]:
        found = []
        while self.peek() is not None:
            found.append(self.operation())
        return found

    def operation(self) -> Operation:
        if self.peek("{"):
            return Operation("query", None, {}, {}, self.selections())
        kind = self.take(kind="name")
        if kind.text not in ("query", "mutation"):
            message = f'"{kind.text}" definitions are not supported by this fake'
            raise GraphQLSyntaxError(message, kind.line, kind.column)
        token = self.peek()
        name = self.take().text if token is not None and token.kind == "name" else None
        variables: dict[str, str] = {}
        defaults: dict[str, Any] = {}
        if self.peek("("):
            self.take("(")
            while not self.peek(")"):
                self.take("$")
                variable = self.take(kind="name").text
                self.take(":")
                variables[variable] = self.type_ref()
                if self.peek("="):
                    self.take("=")
                    defaults[variable] = self.value()
            self.take(")")
        return Operation(kind.text, name, variables, defaults, self.selections())

    def type_ref(self) -> str:
        if self.peek("["):
            self.take("[")
            inner = self.type_ref()
            self.take("]")
            text = f"[{inner}]"
        else:
            text = self.take(kind="name").text
        if self.peek("!"):
            self.take("!")
            text += "!"
        return text

    def selections(self) -> list[Field | Fragment]:
        self.take("{")
        found: list[Field | Fragment] = []
        while not self.peek("}"):
            token = self.peek()
            if token is not None and token.kind == "spread":
                self.take()
                if not self.peek("on") and not self.peek("{"):
                    raise GraphQLSyntaxError(
                        "named fragments are not supported by this fake", token.line, token.column
                    )
                on = None
                if self.peek("on"):
                    self.take("on")
                    on = self.take(kind="name").text
                found.append(Fragment(on, self.selections(), token.line, token.column))
                continue
            found.append(self.field())
        self.take("}")
        if not found:
            raise GraphQLSyntaxError("empty selection set", 0, 0)
        return found

    def field(self) -> Field:
        first = self.take(kind="name")
        alias = name = first.text
        if self.peek(":"):
            self.take(":")
            name = self.take(kind="name").text
        args: dict[str, Any] = {}
        if self.peek("("):
            self.take("(")
            while not self.peek(")"):
                arg = self.take(kind="name").text
                self.take(":")
                args[arg] = self.value()
            self.take(")")
        if self.peek("@"):
            token = self.take("@")
            raise GraphQLSyntaxError(
                "directives are not supported by this fake", token.line, token.column
            )
        selections = self.selections() if self.peek("{") else None
        return Field(name, alias, args, selections, first.line, first.column)

    def value(self) -> Any:
        token = self.take()
        if token.text == "$":
            return Var(self.take(kind="name").text)
        if token.kind == "number":
            return float(token.text) if any(c in token.text for c in ".eE") else int(token.text)
        if token.kind == "string":
            return json.loads(token.text)
        if token.text == "[":
            items = []
            while not self.peek("]"):
                items.append(self.value())
            self.take("]")
            return items
        if token.text == "{":
            fields: Json = {}
            while not self.peek("}"):
                key = self.take(kind="name").text
                self.take(":")
                fields[key] = self.value()
            self.take("}")
            return fields
        if token.kind == "name":
            return {"true": True, "false": False, "null": None}.get(token.text, token.text)
        where = f"[{token.line}, {token.column}]"
        raise GraphQLSyntaxError(
            f'Parse error on "{token.text}" at {where}', token.line, token.column
        )


def parse(source: str) -> list[Operation]:
    """The operations of a document; raises GraphQLSyntaxError."""
    return _Parser(source).operations()


# --- validation ----------------------------------------------------------------------------------


def validate(schema: Schema, operation: Operation) -> list[Json]:
    """graphql-ruby's static errors for `operation` (an empty list when it is valid)."""
    return _Validator(schema, operation).run()


class _Validator:
    def __init__(self, schema: Schema, operation: Operation) -> None:
        self.schema = schema
        self.operation = operation
        self.errors: list[Json] = []
        self.used: set[str] = set()
        self.root = "Query" if operation.kind == "query" else "Mutation"
        self.label = f"{operation.kind} {operation.name or 'anonymous'}"

    def run(self) -> list[Json]:
        self.selections(self.operation.selections, self.root, [self.label])
        for variable in self.operation.variables:
            if variable not in self.used:
                message = f"Variable ${variable} is declared by {self.operation.name} but not used"
                self.error(message, "variableNotUsed", [self.label], 1, 1)
        return self.errors

    def error(self, message: str, code: str, path: list[Any], line: int, column: int) -> None:
        self.errors.append(
            {
                "path": path,
                "extensions": {"code": code},
                "locations": [{"line": line, "column": column}],
                "message": message,
            }
        )

    def selections(self, selections: list[Field | Fragment], parent: str, path: list[Any]) -> None:
        for selection in selections:
            if isinstance(selection, Fragment):
                self.fragment(selection, parent, path)
            else:
                self.field(selection, parent, path)

    def fragment(self, fragment: Fragment, parent: str, path: list[Any]) -> None:
        on = fragment.on or parent
        where = (fragment.line, fragment.column)
        if on not in self.schema.objects:
            message = f"No such type {on}, so it can't be a fragment condition"
            self.error(message, "undefinedType", [*path, f"... on {on}"], *where)
        elif not self.schema.possible(on) & self.schema.possible(parent):
            message = f"Fragment on {on} can't be spread inside {parent}"
            self.error(message, "cannotSpreadFragment", [*path, f"... on {on}"], *where)
        else:
            self.selections(fragment.selections, on, [*path, f"... on {on}"])

    def field(self, field: Field, parent: str, path: list[Any]) -> None:
        here = [*path, field.alias]
        where = (field.line, field.column)
        if field.name == "__typename":
            return
        definition = self.schema.objects[parent].get(field.name)
        if definition is None:
            message = f"Field '{field.name}' doesn't exist on type '{parent}'"
            self.error(message, "undefinedField", here, *where)
            return
        for arg, value in field.args.items():
            expected = definition.args.get(arg)
            if expected is None:
                message = f"Field '{field.name}' doesn't accept argument '{arg}'"
                self.error(message, "argumentNotAccepted", here, *where)
            else:
                self.value(
                    value, expected, f"argument '{arg}' on Field '{field.name}'", here, where
                )
        missing = [
            arg
            for arg, kind in definition.args.items()
            if kind.endswith("!") and arg not in field.args
        ]
        if missing:
            message = f"Field '{field.name}' is missing required arguments: {', '.join(missing)}"
            self.error(message, "missingRequiredArguments", here, *where)
        base = named(definition.type)
        if base in self.schema.leaves:
            if field.selections is not None:
                message = (
                    f"Selections can't be made on scalars (field '{field.name}' returns {base})"
                )
                self.error(message, "selectionMismatch", here, *where)
        elif field.selections is None:
            message = (
                f"Field '{field.name}' of type '{base}' must have a selection of subfields. "
                f"Try '{field.name} {{ ... }}'."
            )
            self.error(message, "selectionMismatch", here, *where)
        else:
            self.selections(field.selections, base, here)

    def value(
        self, value: Any, expected: str, what: str, path: list[Any], where: tuple[int, int]
    ) -> None:
        if isinstance(value, Var):
            self.used.add(value.name)
            declared = self.operation.variables.get(value.name)
            if declared is None:
                message = (
                    f"Variable ${value.name} is used by {self.operation.name} but not declared"
                )
                self.error(message, "variableNotDefined", path, *where)
                return
            defaulted = value.name in self.operation.defaults
            nullable_into_required = expected.endswith("!") and not (
                declared.endswith("!") or defaulted
            )
            if named(declared) != named(expected) or nullable_into_required:
                message = (
                    f"Type mismatch on variable ${value.name} and {what.split(' on ')[0]} "
                    f"({declared} / {expected})"
                )
                self.error(message, "variableMismatch", path, *where)
            return
        if value is None:
            if expected.endswith("!"):
                self.error(
                    f"{what} has an invalid value (null)",
                    "argumentLiteralsIncompatible",
                    path,
                    *where,
                )
            return
        base = named(expected)
        if base in self.schema.inputs:
            fields = self.schema.inputs[base]
            if not isinstance(value, dict):
                self.error(
                    f"{what} has an invalid value. Expected type '{expected}'.",
                    "argumentLiteralsIncompatible",
                    path,
                    *where,
                )
                return
            for key, item in value.items():
                if key not in fields:
                    message = f"InputObject '{base}' doesn't accept argument '{key}'"
                    self.error(message, "argumentNotAccepted", path, *where)
                else:
                    self.value(
                        item, fields[key], f"argument '{key}' on InputObject '{base}'", path, where
                    )
            for key, kind in fields.items():
                if kind.endswith("!") and key not in value:
                    message = f"Argument '{key}' on InputObject '{base}' is required"
                    self.error(message, "missingRequiredInputObjectAttribute", path, *where)
            return
        if not _literal_fits(value, base):
            self.error(
                f"{what} has an invalid value ({json.dumps(value)}). Expected type '{expected}'.",
                "argumentLiteralsIncompatible",
                path,
                *where,
            )


def _literal_fits(value: Any, base: str) -> bool:
    if base == "Int":
        return isinstance(value, int) and not isinstance(value, bool)
    if base == "Float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if base == "Boolean":
        return isinstance(value, bool)
    if base == "ID":
        return isinstance(value, str | int) and not isinstance(value, bool)
    return isinstance(value, str)  # String, and enum values (names)


def variable_errors(
    schema: Schema, operation: Operation, provided: Mapping[str, Any]
) -> list[Json]:
    """graphql-ruby's errors for variable values that do not fit their declared types."""
    errors = []
    for variable, declared in operation.variables.items():
        value = provided.get(variable, operation.defaults.get(variable))
        base = named(declared)
        problem = None
        if value is None:
            if declared.endswith("!"):
                problem = "Expected value to not be null"
        elif declared.startswith("["):
            if not isinstance(value, list):
                problem = f"Could not coerce value {json.dumps(value)} to {declared}"
        elif base in schema.inputs:
            if not isinstance(value, dict):
                problem = f"Could not coerce value {json.dumps(value)} to {base}"
        elif not _literal_fits(value, base):
            problem = f"Could not coerce value {json.dumps(value)} to {base}"
        if problem is not None:
            errors.append(
                {
                    "extensions": {
                        "value": value,
                        "problems": [{"path": [], "explanation": problem}],
                    },
                    "locations": [{"line": 1, "column": 1}],
                    "message": (
                        f"Variable ${variable} of type {declared} was provided invalid value"
                    ),
                }
            )
    return errors


# --- execution -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Node:
    """A value of an object type while executing: its concrete type and what resolvers need."""

    typename: str
    value: Any


class FieldError(Exception):
    """Raised by a resolver: the field is null and this error is reported (GitHub's `type`)."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


# (the parent's value, the arguments with variables filled in) -> the field's value
Resolver = Callable[[Any, Json], Any]


class _Null(Exception):
    """A null where the schema promises a value: it propagates to the nearest nullable."""


class Execution:
    """Runs one validated operation; `errors` collects what resolvers raised."""

    def __init__(
        self, schema: Schema, resolvers: Mapping[tuple[str, str], Resolver], variables: Json
    ) -> None:
        self.schema = schema
        self.resolvers = resolvers
        self.variables = variables
        self.errors: list[Json] = []

    def run(self, operation: Operation, root: Node) -> Json | None:
        try:
            return self.select(operation.selections, root, [])
        except _Null:
            return None

    def select(self, selections: list[Field | Fragment], node: Node, path: list[Any]) -> Json:
        result: Json = {}
        for selection in selections:
            if isinstance(selection, Fragment):
                if node.typename in self.schema.possible(selection.on or node.typename):
                    result.update(self.select(selection.selections, node, path))
                continue
            if selection.name == "__typename":
                result[selection.alias] = node.typename
                continue
            definition = self.schema.objects[node.typename][selection.name]
            here = [*path, selection.alias]
            args = {name: self.fill(value) for name, value in selection.args.items()}
            resolver = self.resolvers.get((node.typename, selection.name))
            try:
                if resolver is not None:
                    value = resolver(node.value, args)
                else:
                    value = node.value.get(selection.name)  # a plain mapping's own field
            except FieldError as exc:
                self.errors.append(
                    {
                        "type": exc.error_type,
                        "path": here,
                        "locations": [{"line": selection.line, "column": selection.column}],
                        "message": exc.message,
                    }
                )
                value = None
            result[selection.alias] = self.complete(definition.type, value, selection, here)
        return result

    def complete(self, type_ref: str, value: Any, selection: Field, path: list[Any]) -> Any:
        if type_ref.endswith("!"):
            completed = self.content(type_ref[:-1], value, selection, path)
            if completed is None:
                raise _Null
            return completed
        try:
            return self.content(type_ref, value, selection, path)
        except _Null:
            return None

    def content(self, type_ref: str, value: Any, selection: Field, path: list[Any]) -> Any:
        if value is None:
            return None
        if type_ref.startswith("["):
            inner = type_ref[1:-1]
            return [self.complete(inner, v, selection, [*path, i]) for i, v in enumerate(value)]
        if type_ref in self.schema.leaves:
            return value
        if not isinstance(value, Node) or selection.selections is None:
            raise TypeError(f"a resolver for {type_ref} gave {value!r}, not a Node")
        return self.select(selection.selections, value, path)

    def fill(self, value: Any) -> Any:
        if isinstance(value, Var):
            return self.variables.get(value.name)
        if isinstance(value, list):
            return [self.fill(item) for item in value]
        if isinstance(value, dict):
            return {key: self.fill(item) for key, item in value.items()}
        return value
