"""GitHub's errors for the GraphQL requests it refuses, for tests/fakes/github_graphql.py.

Whether a document or its variables are refused is graphql-core's verdict (the rules of
the spec). GitHub runs graphql-ruby, which words the same refusals its own way, with an
`extensions.code` and a `path` of response keys, and our code reports what GitHub says;
so the refusals a document of ours can run into are worded here as graphql-ruby words
them. Any other refusal keeps graphql-core's message: still refused, only worded otherwise.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import graphql
from graphql import (
    ArgumentNode,
    DirectiveNode,
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    GraphQLCompositeType,
    GraphQLError,
    GraphQLField,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLOutputType,
    GraphQLSchema,
    InlineFragmentNode,
    ListValueNode,
    NamedTypeNode,
    Node,
    NullValueNode,
    ObjectFieldNode,
    ObjectValueNode,
    OperationDefinitionNode,
    TypeInfo,
    TypeInfoVisitor,
    TypeNode,
    ValueNode,
    VariableDefinitionNode,
    VariableNode,
    Visitor,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
    is_required_argument,
    is_required_input_field,
)
from graphql.utilities import validate_input_literal, validate_input_value
from graphql.validation import (
    ASTValidationRule,
    FieldsOnCorrectTypeRule,
    FragmentsOnCompositeTypesRule,
    KnownArgumentNamesRule,
    KnownTypeNamesRule,
    NoUndefinedVariablesRule,
    NoUnusedVariablesRule,
    PossibleFragmentSpreadsRule,
    ProvidedRequiredArgumentsRule,
    ScalarLeafsRule,
    ValuesOfCorrectTypeRule,
    VariablesAreInputTypesRule,
    VariablesInAllowedPositionRule,
)

Json = dict[str, Any]


def syntax_error(error: GraphQLError) -> Json:
    """graphql-ruby's answer to a document that does not parse."""
    source, positions, locations = error.source, error.positions, error.locations
    assert source is not None, "a parse error has its source"
    assert positions, "and where in it"
    assert locations, "as a line and column"
    line, column = locations[0]
    token = _TOKEN.match(source.body, next(iter(positions)))
    message = (
        f'Parse error on "{token.group()}" at [{line}, {column}]'
        if token
        else "Unexpected end of document"
    )
    return {"message": message, "locations": [{"line": line, "column": column}]}


_TOKEN = re.compile(r'\.\.\.|"(?:[^"\\\n]|\\.)*"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\w+|\S')


def static_errors(schema: GraphQLSchema, document: DocumentNode) -> list[Json]:
    """graphql-ruby's errors for `document`, in document order; [] when it is valid."""
    where = _Where(schema, document)
    found = _literal_errors(where)
    for rule in graphql.specified_rules:  # one at a time, to know which rule refused what
        if rule is ValuesOfCorrectTypeRule:
            continue  # _literal_errors
        for refusal in graphql.validate(schema, document, [rule]):
            reword = _REWORDED.get(rule)
            found.extend((reword(where, refusal) if reword else []) or [dict(refusal.formatted)])
    unique: list[Json] = []  # graphql-ruby says once what graphql-core says per argument
    for error in found:
        if error not in unique:
            unique.append(error)
    return sorted(unique, key=_place)


def variable_errors(
    schema: GraphQLSchema, operation: OperationDefinitionNode, provided: Json
) -> list[Json]:
    """graphql-ruby's errors for variable values that do not fit their declared types."""
    errors = []
    for definition in operation.variable_definitions or ():
        name = definition.variable.name.value
        if name not in provided and definition.default_value is not None:
            continue  # the default is a literal of the document, checked with it
        type_ = graphql.type_from_ast(schema, definition.type)
        assert graphql.is_input_type(type_), "a valid document declares input types"
        value = provided.get(name)
        problems = _problems(value, type_)
        if problems:
            errors.append(
                {
                    "extensions": {"value": value, "problems": problems},
                    "locations": [_location(definition)],
                    "message": (
                        f"Variable ${name} of type {graphql.print_ast(definition.type)} "
                        "was provided invalid value"
                    ),
                }
            )
    return errors


# --- variables ---------------------------------------------------------------------------------


def _problems(value: Any, type_: GraphQLInputType) -> list[Json]:
    found: list[Json] = []

    def refused(_: GraphQLError, path: list[str | int]) -> None:
        found.extend(p for p in _problems_at(value, type_, path) if p not in found)

    validate_input_value(value, type_, refused)
    return found


def _problems_at(value: Any, type_: GraphQLInputType, path: list[str | int]) -> list[Json]:
    """graphql-ruby's problems with the part of a value at `path` that graphql-core refused."""
    for key in path:
        value = value[key]
        nullable = get_nullable_type(type_)
        if isinstance(nullable, GraphQLList):
            type_ = nullable.of_type
        else:
            assert isinstance(nullable, GraphQLInputObjectType)
            type_ = nullable.fields[str(key)].type
    named = get_named_type(type_)
    if value is None:
        return [{"path": path, "explanation": "Expected value to not be null"}]
    if isinstance(named, GraphQLInputObjectType) and isinstance(value, dict):
        missing = [
            key
            for key, field in named.fields.items()
            if is_required_input_field(field) and key not in value
        ]
        unknown = [key for key in value if key not in named.fields]
        return [
            *({"path": [*path, key], "explanation": "Expected value to not be null"}
              for key in missing),
            *({"path": [*path, key], "explanation": f"Field is not defined on {named}"}
              for key in unknown),
        ]  # fmt: skip
    return [{"path": path, "explanation": f"Could not coerce value {json.dumps(value)} to {named}"}]


# --- where a node sits -------------------------------------------------------------------------


@dataclass(frozen=True)
class _At:
    parent: Node | None
    parent_type: GraphQLCompositeType | None
    type: GraphQLOutputType | None
    field: GraphQLField | None
    input_type: GraphQLInputType | None
    parent_input_type: GraphQLInputType | None


class _Where(Visitor):
    """Every node of a document with its parent and what graphql-core's TypeInfo knows there."""

    def __init__(self, schema: GraphQLSchema, document: DocumentNode) -> None:
        super().__init__()
        self.schema = schema
        self.type_info = TypeInfo(schema)
        self.nodes: list[Node] = []  # in document order
        self.at: dict[int, _At] = {}  # by id(): equal nodes sit in different places
        graphql.visit(document, TypeInfoVisitor(self.type_info, self))

    def enter(self, node: Node, _key: Any, parent: Any, _path: Any, ancestors: list[Any]) -> None:
        ancestors = [a for a in (*ancestors, parent) if isinstance(a, Node)]  # not lists
        info = self.type_info
        self.nodes.append(node)
        self.at[id(node)] = _At(
            parent=ancestors[-1] if ancestors else None,
            parent_type=info.get_parent_type(),
            type=info.get_type(),
            field=info.get_field_def(),
            input_type=info.get_input_type(),
            parent_input_type=info.get_parent_input_type(),
        )

    def chain(self, node: Node) -> list[Node]:
        """`node` and the nodes it sits in, innermost first."""
        found: list[Node] = []
        current: Node | None = node
        while current is not None:
            found.append(current)
            current = self.at[id(current)].parent
        return found

    def path(self, node: Node) -> list[str]:
        """graphql-ruby's `path`: the operation, response keys and fragments down to `node`."""
        return [label for n in reversed(self.chain(node)) if (label := self.label(n))]

    def label(self, node: Node) -> str | None:
        if isinstance(node, OperationDefinitionNode):
            return f"{node.operation.value} {node.name.value if node.name else 'anonymous'}"
        if isinstance(node, FragmentDefinitionNode):
            return f"fragment {node.name.value}"
        if isinstance(node, FieldNode):
            return (node.alias or node.name).value
        if isinstance(node, InlineFragmentNode):
            on = node.type_condition.name.value if node.type_condition else None
            return f"... on {on or self.at[id(node)].parent_type}"
        return None

    def field(self, node: Node) -> Node:
        """The field an argument or value belongs to (graphql-ruby reports it there)."""
        return next((n for n in self.chain(node) if isinstance(n, FieldNode)), node)

    def within(self, node: Node) -> ArgumentNode | ObjectFieldNode | VariableDefinitionNode | None:
        """The argument, input object field or variable default a value is given for."""
        kinds = ArgumentNode | ObjectFieldNode | VariableDefinitionNode
        return next((n for n in self.chain(node) if isinstance(n, kinds)), None)

    def error(self, message: str, code: str, node: Node) -> Json:
        return {
            "path": self.path(node),
            "extensions": {"code": code},
            "locations": [_location(node)],
            "message": message,
        }


def _location(node: Node) -> Json:
    assert node.loc is not None, "documents are parsed with locations"
    return {"line": node.loc.start_token.line, "column": node.loc.start_token.column}


def _place(error: Json) -> tuple[int, int]:
    locations = error.get("locations") or [{"line": 0, "column": 0}]
    return locations[0]["line"], locations[0]["column"]


def _nodes(error: GraphQLError) -> list[Node]:
    assert error.nodes, "graphql-core's rules say where"
    return list(error.nodes)


def _operation_name(operation: Node) -> str:
    assert isinstance(operation, OperationDefinitionNode)
    return operation.name.value if operation.name else f"anonymous {operation.operation.value}"


# --- literals ----------------------------------------------------------------------------------


def _literal_errors(where: _Where) -> list[Json]:
    """ValuesOfCorrectTypeRule's verdict, worded as graphql-ruby words it.

    The rule checks each argument's literal (and each variable's default) with
    validate_input_literal, but keeps only the node of a problem, and for a list or object
    given for a scalar that node is a copy with no place in the document. So the literals
    are checked here with the same function, which also tells where in the literal.
    """
    found: list[Json] = []
    for node in where.nodes:
        type_ = where.at[id(node)].input_type
        if isinstance(node, ArgumentNode) and type_ is not None:
            found.extend(_literal_problems(where, node.value, type_))
        elif isinstance(node, VariableDefinitionNode) and node.default_value and type_:
            found.extend(_literal_problems(where, node.default_value, type_))
    return found


def _literal_problems(where: _Where, literal: ValueNode, type_: GraphQLInputType) -> list[Json]:
    found: list[Json] = []

    def refused(error: GraphQLError, path: list[str | int]) -> None:
        node = error.nodes[0] if error.nodes else None
        if node is None or id(node) not in where.at:  # a copy
            node = _value_at(literal, path)
        found.extend(_invalid_literal(where, node))

    validate_input_literal(literal, type_, refused)
    return found


def _value_at(literal: ValueNode, path: list[str | int]) -> ValueNode:
    for key in path:
        if isinstance(literal, ListValueNode):
            literal = literal.values[int(key)]
        elif isinstance(literal, ObjectValueNode):
            literal = next(f.value for f in literal.fields if f.name.value == key)
    return literal


def _invalid_literal(where: _Where, node: Node) -> list[Json]:
    within, field = where.within(node), where.field(node)
    if isinstance(within, VariableDefinitionNode):
        message = (
            f"Default value for ${within.variable.name.value} doesn't match type "
            f"{graphql.print_ast(within.type)}"
        )
        return [where.error(message, "defaultValueInvalidType", within)]
    at = where.at[id(node)]
    if isinstance(node, ObjectFieldNode):  # a field the input object does not have
        owner = get_named_type(at.parent_input_type)
        message = f"InputObject '{owner}' doesn't accept argument '{node.name.value}'"
        return [where.error(message, "argumentNotAccepted", field)]
    owner = get_named_type(at.input_type)
    if isinstance(node, ObjectValueNode) and isinstance(owner, GraphQLInputObjectType):
        given = {f.name.value for f in node.fields}
        return [
            where.error(
                f"Argument '{key}' on InputObject '{owner}' is required",
                "missingRequiredInputObjectAttribute",
                field,
            )
            for key, input_field in owner.fields.items()
            if is_required_input_field(input_field) and key not in given
        ]
    while isinstance(parent := where.at[id(node)].parent, ListValueNode):
        node = parent  # graphql-ruby shows the whole list, not the item
    # TypeInfo is already inside a list's items when it enters the list.
    at = where.at[id(node)]
    expected = at.parent_input_type if isinstance(node, ListValueNode) else at.input_type
    what = _what(where, where.within(node))
    if isinstance(node, NullValueNode):
        message = f"{what} has an invalid value (null)"
    elif isinstance(get_named_type(expected), GraphQLInputObjectType):
        message = f"{what} has an invalid value. Expected type '{expected}'."
    else:
        assert isinstance(node, ValueNode)
        literal = json.dumps(graphql.value_from_ast_untyped(node))
        message = f"{what} has an invalid value ({literal}). Expected type '{expected}'."
    return [where.error(message, "argumentLiteralsIncompatible", field)]


def _what(where: _Where, given: Node | None) -> str:
    """graphql-ruby's name for where a value goes: "argument 'x' on Field 'f'"."""
    if isinstance(given, ObjectFieldNode):
        owner = get_named_type(where.at[id(given)].parent_input_type)
        return f"argument '{given.name.value}' on InputObject '{owner}'"
    assert isinstance(given, ArgumentNode)
    parent = where.at[id(given)].parent
    assert isinstance(parent, FieldNode | DirectiveNode)
    kind = "Field" if isinstance(parent, FieldNode) else "Directive"
    return f"argument '{given.name.value}' on {kind} '{parent.name.value}'"


# --- graphql-ruby's wording, by the graphql-core rule that refused -----------------------------


def _undefined_field(where: _Where, error: GraphQLError) -> list[Json]:
    field = _nodes(error)[0]
    assert isinstance(field, FieldNode)
    parent = where.at[id(field)].parent_type
    message = f"Field '{field.name.value}' doesn't exist on type '{parent}'"
    return [where.error(message, "undefinedField", field)]


def _unknown_argument(where: _Where, error: GraphQLError) -> list[Json]:
    argument = _nodes(error)[0]
    field = where.at[id(argument)].parent
    if not isinstance(argument, ArgumentNode) or not isinstance(field, FieldNode):
        return []  # a directive's
    message = f"Field '{field.name.value}' doesn't accept argument '{argument.name.value}'"
    return [where.error(message, "argumentNotAccepted", field)]


def _missing_arguments(where: _Where, error: GraphQLError) -> list[Json]:
    field = _nodes(error)[0]
    definition = where.at[id(field)].field
    if not isinstance(field, FieldNode) or definition is None:
        return []  # a directive's
    given = {argument.name.value for argument in field.arguments or ()}
    missing = [
        name
        for name, argument in definition.args.items()
        if is_required_argument(argument) and name not in given
    ]
    message = f"Field '{field.name.value}' is missing required arguments: {', '.join(missing)}"
    return [where.error(message, "missingRequiredArguments", field)]


def _selection_mismatch(where: _Where, error: GraphQLError) -> list[Json]:
    field = where.field(_nodes(error)[0])
    if not isinstance(field, FieldNode):
        return []
    name, returns = field.name.value, get_named_type(where.at[id(field)].type)
    message = (
        f"Selections can't be made on scalars (field '{name}' returns {returns})"
        if is_leaf_type(returns)
        else f"Field '{name}' of type '{returns}' must have a selection of subfields. "
        f"Try '{name} {{ ... }}'."
    )
    return [where.error(message, "selectionMismatch", field)]


def _unknown_type(where: _Where, error: GraphQLError) -> list[Json]:
    named = _nodes(error)[0]
    assert isinstance(named, NamedTypeNode)
    owner = next(n for n in where.chain(named) if not isinstance(n, TypeNode))
    if isinstance(owner, VariableDefinitionNode):
        message = f"{named.name.value} isn't a defined input type (on ${owner.variable.name.value})"
        return [where.error(message, "variableRequiresValidType", owner)]
    return _fragment_condition(where, error)


def _fragment_condition(where: _Where, error: GraphQLError) -> list[Json]:
    named = _nodes(error)[0]
    fragment = where.at[id(named)].parent
    if not isinstance(fragment, InlineFragmentNode) or fragment.type_condition is None:
        return []  # a named fragment's
    on = fragment.type_condition.name.value
    message = f"No such type {on}, so it can't be a fragment condition"
    return [where.error(message, "undefinedType", fragment)]


def _not_input_type(where: _Where, error: GraphQLError) -> list[Json]:
    owner = where.at[id(_nodes(error)[0])].parent
    assert isinstance(owner, VariableDefinitionNode)
    named = get_named_type(graphql.type_from_ast(where.schema, owner.type))
    message = f"{named} isn't a valid input type (on ${owner.variable.name.value})"
    return [where.error(message, "variableRequiresValidType", owner)]


def _impossible_spread(where: _Where, error: GraphQLError) -> list[Json]:
    fragment = _nodes(error)[0]
    if not isinstance(fragment, InlineFragmentNode) or fragment.type_condition is None:
        return []  # a named fragment's spread
    on, parent = fragment.type_condition.name.value, where.at[id(fragment)].parent_type
    message = f"Fragment on {on} can't be spread inside {parent}"
    return [where.error(message, "cannotSpreadFragment", fragment)]


def _undeclared_variable(where: _Where, error: GraphQLError) -> list[Json]:
    variable, operation = _nodes(error)[:2]
    assert isinstance(variable, VariableNode)
    message = (
        f"Variable ${variable.name.value} is used by {_operation_name(operation)} but not declared"
    )
    return [where.error(message, "variableNotDefined", where.field(variable))]


def _unused_variable(where: _Where, error: GraphQLError) -> list[Json]:
    definition = _nodes(error)[0]
    assert isinstance(definition, VariableDefinitionNode)
    operation = where.at[id(definition)].parent
    assert operation is not None
    message = (
        f"Variable ${definition.variable.name.value} is declared by "
        f"{_operation_name(operation)} but not used"
    )
    return [where.error(message, "variableNotUsed", operation)]


def _variable_mismatch(where: _Where, error: GraphQLError) -> list[Json]:
    definition, variable = _nodes(error)[:2]
    given = where.within(variable)
    assert isinstance(definition, VariableDefinitionNode)
    assert isinstance(given, ArgumentNode | ObjectFieldNode), "defaults are constants"
    declared, expected = graphql.print_ast(definition.type), where.at[id(variable)].input_type
    message = (
        f"Type mismatch on variable ${definition.variable.name.value} and argument "
        f"'{given.name.value}' ({declared} / {expected})"
    )
    return [where.error(message, "variableMismatch", where.field(variable))]


_REWORDED: Mapping[type[ASTValidationRule], Callable[[_Where, GraphQLError], list[Json]]] = {
    FieldsOnCorrectTypeRule: _undefined_field,
    KnownArgumentNamesRule: _unknown_argument,
    ProvidedRequiredArgumentsRule: _missing_arguments,
    ScalarLeafsRule: _selection_mismatch,
    KnownTypeNamesRule: _unknown_type,
    FragmentsOnCompositeTypesRule: _fragment_condition,
    VariablesAreInputTypesRule: _not_input_type,
    PossibleFragmentSpreadsRule: _impossible_spread,
    NoUndefinedVariablesRule: _undeclared_variable,
    NoUnusedVariablesRule: _unused_variable,
    VariablesInAllowedPositionRule: _variable_mismatch,
}
