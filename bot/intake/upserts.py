"""Prebuilt `INSERT ... ON CONFLICT DO UPDATE` statements for the mirror.

Built once at import and executed with parameters, so SQLAlchemy compiles each only once:
building `excluded` column collections per call cost more than the database round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import ColumnElement, Table, bindparam, func, or_
from sqlalchemy.dialects.postgresql import Insert, insert
from sqlalchemy.sql.dml import ReturningInsert

from harness_store.db import Base


def upsert(
    model: type[Base],
    keys: Iterable[str],
    *,
    update: Iterable[str] | None = None,
    keep_when_null: Iterable[str] = (),
    guard: Callable[[Table, Any], ColumnElement[bool]] | None = None,
    returning: str | None = None,
    bound: Iterable[str] | None = None,
) -> Insert | ReturningInsert[Any]:
    """An upsert of `model` on `keys` that updates `update` (default: every other column).

    `keep_when_null` columns keep their stored value when the incoming one is NULL (events
    that do not carry a field). `guard(table, excluded)` limits which conflicts update.
    `bound`: the columns inserted, each from the parameter of its name, for an upsert used
    inside another statement (a CTE, where the execution's parameters do not pick them).
    """
    table: Table = model.__table__  # type: ignore[assignment]  # declarative models have a Table
    keys = list(keys)
    statement = insert(table)
    if bound is not None:
        statement = statement.values(
            {name: bindparam(name, type_=table.c[name].type) for name in bound}
        )
    excluded = statement.excluded
    keep = set(keep_when_null)
    skip = {*keys, "created_at", "updated_at", "id"} if update is None else set()
    columns = (
        list(update) if update is not None else [c.name for c in table.c if c.name not in skip]
    )
    changes: dict[str, Any] = {
        name: func.coalesce(excluded[name], table.c[name]) if name in keep else excluded[name]
        for name in columns
    }
    if "updated_at" in table.c:
        changes["updated_at"] = func.now()
    result = statement.on_conflict_do_update(
        index_elements=keys,
        set_=changes,
        where=guard(table, excluded) if guard is not None else None,
    )
    if returning is not None:
        return result.returning(table.c[returning])
    return result


def not_older(column: str) -> Callable[[Table, Any], ColumnElement[bool]]:
    """Guard: the incoming row is at least as new as the stored one (or either is unknown)."""

    def guard(table: Table, excluded: Any) -> ColumnElement[bool]:
        stored, incoming = table.c[column], excluded[column]
        return or_(stored.is_(None), incoming.is_(None), stored <= incoming)

    return guard
