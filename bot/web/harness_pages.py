"""The harness and skill pages that read: the list, one name's versions, one version (as
Markdown and as source, with the runs that used it) and a diff between any two versions.

Routes (the same under `/skills`; the writes are in bot/web/harness_edit.py):
    GET /harnesses                          every harness, its last change and who uses it
    GET /harnesses/{name}                   its versions, compare and roll-back forms
    GET /harnesses/{name}/versions/{n}      one version, rendered and as source, runs using it
    GET /harnesses/{name}/diff?from=A&to=B&view=unified|split
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import defer
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from bot.api.harness_usage import run_counts, version_runs
from bot.api.request import ApiError, Query, deps_of
from bot.web import harness_edit
from bot.web.diff_view import FileDiff, diff_file, diff_files
from bot.web.harness_kinds import (
    HARNESSES,
    SKILLS,
    AnyShelf,
    Shelf,
    context,
    current_or_404,
    name_of,
    version_number,
    version_or_404,
)
from bot.web.markdown import render_markdown
from bot.web.pages import Handler, bad_request, html_endpoint, not_found, page, reader
from harness_store.models import HarnessVersion, SkillVersion
from harness_store.skills import SKILL_FILE
from harness_store.store import V

VIEWS = ("unified", "split")
RUNS_SHOWN = 50


async def list_page(request: Request, shelf: Shelf[V]) -> Response:
    """Every name: current version, last change, and the repositories and workflows using it."""
    reader(request)
    model = shelf.model
    # One row per name, its newest version first (DISTINCT ON), with the count of versions.
    query = (
        select(
            model.name,
            model.version,
            model.author,
            model.message,
            model.created_at,
            func.count().over(partition_by=model.name),
        )
        .ext(distinct_on(model.name))
        .order_by(model.name, model.version.desc())
    )
    async with deps_of(request).sessions() as session:
        rows = (await session.execute(query)).all()
        usage = await shelf.usage(session)
    names = [
        {
            "name": name,
            "version": version,
            "author": author,
            "message": message,
            "created_at": created_at,
            "versions": count,
            "used_by": usage.get(name, []),
        }
        for name, version, author, message, created_at, count in rows
    ]
    return page(request, "harness_list.html", context(shelf, title=shelf.title, names=names))


async def versions_page(request: Request, shelf: Shelf[V]) -> Response:
    """One name's versions, newest first, with their run counts and the forms that act on them."""
    reader(request)
    name = name_of(request, shelf)
    big = HarnessVersion.content if shelf.kind == "harness" else SkillVersion.files
    query = (
        select(shelf.model)
        .where(shelf.model.name == name)
        .order_by(shelf.model.version.desc())
        .options(defer(big))  # a long history of long texts is not needed for a table
    )
    async with deps_of(request).sessions() as session:
        versions = list((await session.execute(query)).scalars())
        if not versions:
            await current_or_404(request, session, shelf, name)
        counts = await run_counts(session, versions)
    values = context(
        shelf,
        title=f"{shelf.noun.capitalize()} {name}",
        name=name,
        versions=versions,
        current=versions[0],
        counts=counts,
    )
    return page(request, "harness_versions.html", values)


async def version_page(request: Request, shelf: Shelf[V]) -> Response:
    """One version rendered as Markdown and as source, and the runs that were given it."""
    reader(request)
    name = name_of(request, shelf)
    number = version_number(request.path_params["number"])
    if number is None:
        raise not_found(request, f"{shelf.noun.capitalize()} {name!r} has no such version.")
    async with deps_of(request).sessions() as session:
        version = await version_or_404(request, session, shelf, name, number)
        current = await current_or_404(request, session, shelf, name)
        runs = await version_runs(session, version, limit=RUNS_SHOWN)
    values = context(
        shelf,
        title=version.label,
        name=name,
        version=version,
        current=current,
        runs=runs,
        runs_shown=RUNS_SHOWN,
    )
    if isinstance(version, HarnessVersion):
        values["rendered"] = render_markdown(version.content)
        return page(request, "harness_version.html", values)
    skill_md = version.files.get(SKILL_FILE)
    values["rendered"] = None if skill_md is None else render_markdown(skill_md)
    values["files"] = sorted(version.files.items())
    return page(request, "skill_version.html", values)


async def diff_page(request: Request, shelf: Shelf[V]) -> Response:
    """The diff from version `from` (default: the one before `to`) to `to` (default: current)."""
    reader(request)
    name = name_of(request, shelf)
    try:
        query = Query(request, {"from", "to", "view"})
        view = query.choice("view", VIEWS) or "unified"
        raw_from, raw_to = query.one("from"), query.one("to")
    except ApiError as error:
        raise bad_request(request, error.message) from None
    newer, older = version_number(raw_to), version_number(raw_from)
    if raw_to is not None and newer is None:
        raise bad_request(request, f"to: must be a version number, got {raw_to[:40]!r}")
    if raw_from is not None and older is None:
        raise bad_request(request, f"from: must be a version number, got {raw_from[:40]!r}")
    async with deps_of(request).sessions() as session:
        current = await current_or_404(request, session, shelf, name)
        newer = newer or current.version
        older = older or max(newer - 1, 1)
        old = await version_or_404(request, session, shelf, name, older)
        new = await version_or_404(request, session, shelf, name, newer)
    files: list[FileDiff]
    if isinstance(old, HarnessVersion) and isinstance(new, HarnessVersion):
        file = diff_file(f"{name}.md", old.content, new.content)
        files = [file] if file.hunks or file.note else []
    elif isinstance(old, SkillVersion) and isinstance(new, SkillVersion):
        files = diff_files(old.files, new.files)
    values = context(
        shelf,
        title=f"{name}: version {older} → {newer}",
        name=name,
        old=old,
        new=new,
        current=current,
        files=files,
        view=view,
        views=VIEWS,
    )
    return page(request, "harness_diff.html", values)


def _bound(handler: Any, shelf: AnyShelf) -> Handler:
    async def endpoint(request: Request) -> Response:
        response: Response = await handler(request, shelf)
        return response

    endpoint.__name__ = f"{handler.__name__}_{shelf.kind}"
    return html_endpoint(endpoint)


def harness_routes() -> list[BaseRoute]:
    """The read and write routes of the harness and skill pages."""
    routes: list[BaseRoute] = []
    for shelf in (HARNESSES, SKILLS):
        base = shelf.base
        routes += [
            Route(base, _bound(list_page, shelf), methods=["GET"]),
            # `-` can never be a name, so these cannot hide a harness called "new".
            Route(f"{base}/-/new", _bound(harness_edit.new_name_form, shelf), methods=["GET"]),
            Route(f"{base}/-/new", _bound(harness_edit.publish_new_name, shelf), methods=["POST"]),
            Route(f"{base}/{{name}}", _bound(versions_page, shelf), methods=["GET"]),
            Route(
                f"{base}/{{name}}/versions/{{number}}",
                _bound(version_page, shelf),
                methods=["GET"],
            ),
            Route(f"{base}/{{name}}/diff", _bound(diff_page, shelf), methods=["GET"]),
            Route(f"{base}/{{name}}/new", _bound(harness_edit.editor, shelf), methods=["GET"]),
            Route(f"{base}/{{name}}/new", _bound(harness_edit.publish, shelf), methods=["POST"]),
            Route(
                f"{base}/{{name}}/rollback", _bound(harness_edit.rollback, shelf), methods=["POST"]
            ),
        ]
    return routes
