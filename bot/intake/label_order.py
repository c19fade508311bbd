"""A label's rename or deletion in order with the ticket events other batches apply.

The worker applies two batches at once (bot/intake/pump.py), each claiming the due
deliveries no one else holds, so an issue event and a rename of one of its repository's
labels can land in different batches applied side by side. The rename changes the labels of
the tickets stored when its statement runs; the issue event, stored by the other batch's
uncommitted transaction meanwhile, keeps the old name for good.

So a batch first locks each label scope it touches (a GitHub repository; a tracker's labels
span its teams, so the whole tracker): shared for ticket events, exclusive where a label is
renamed or deleted. Batches of ticket events still run side by side; a rename waits for
those in flight, and they for it, and whichever commits second sees what the first did (a
ticket event reads its labels' names only after its locks). The locks are taken sorted, in
one statement, before any other: two batches never wait for each other through them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import Boolean, String

from adapters.base import ParsedDelivery
from adapters.normalized import LabelChanged, TrackerLabelChanged
from bot.errors import PayloadError

# Advisory lock namespace of the label scopes (bot.engine.runs.claims has 1 and 2, the
# machines' slots 0x0A5E0004).
LABEL_SCOPE_LOCK = 0x0A5E0005

# In the arrays' order (sorted by the caller): the function scan evaluates row by row.
_LOCK_SCOPES = text(
    """
    SELECT CASE WHEN scope.exclusive
                THEN pg_advisory_xact_lock(:space, hashtext(scope.name))::text
                ELSE pg_advisory_xact_lock_shared(:space, hashtext(scope.name))::text
           END
    FROM unnest(:names, :exclusive) AS scope(name, exclusive)
    """
).bindparams(
    bindparam("names", type_=ARRAY(String)),
    bindparam("exclusive", type_=ARRAY(Boolean)),
)


def label_scopes(
    rows: Sequence[Row[Any]], parsed: Sequence[ParsedDelivery | PayloadError]
) -> dict[str, bool]:
    """The label scopes these deliveries touch: scope -> whether one renames or deletes a
    label of it (exclusive)."""
    scopes: dict[str, bool] = {}
    for row, delivery in zip(rows, parsed, strict=True):
        if isinstance(delivery, PayloadError) or not delivery.events:
            continue
        if row.source == "github":
            if not row.repository:
                continue  # an installation's events: no ticket, no label
            scope = f"github:{str(row.repository).lower()}"
        else:
            scope = str(row.source)
        changes = any(
            isinstance(event, LabelChanged | TrackerLabelChanged)
            and event.action in ("edited", "deleted")
            for event in delivery.events
        )
        scopes[scope] = scopes.get(scope, False) or changes
    return scopes


async def lock_label_scopes(session: AsyncSession, scopes: dict[str, bool]) -> None:
    """Hold the scopes' locks until the transaction ends (sorted: no deadlock)."""
    if not scopes:
        return
    names = sorted(scopes)
    await session.execute(
        _LOCK_SCOPES,
        {
            "space": LABEL_SCOPE_LOCK,
            "names": names,
            "exclusive": [scopes[name] for name in names],
        },
    )
