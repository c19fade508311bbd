"""The harness and skill pages that write: the editor that publishes a new version, the form
that starts a new name, and roll back.

Routes (the same under `/skills`):
    GET  /harnesses/{name}/new     the editor, filled with the current (or `?from=N`) version
    POST /harnesses/{name}/new     publish: 303 to the new version; 422 with the text kept
                                   when the store refuses it or the message is missing; 409
                                   when someone published since the editor opened;
                                   `intent=preview`: the editor again with the draft
                                   rendered (a sample ticket), numbered and diffed against
                                   the current version, nothing published
    GET  /harnesses/-/new          a new name; POST publishes its version 1
    POST /harnesses/{name}/rollback  publish an old version again as the newest

Every write needs a signed-in session and the form's CSRF token; the version's author is the
session's user.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from bot.api.request import deps_of
from bot.web.harness_kinds import (
    AnyShelf,
    Shelf,
    context,
    current_or_404,
    name_of,
    version_number,
    version_or_404,
)
from bot.web.harness_preview import Preview, preview_harness, preview_skill
from bot.web.pages import Refused, bad_request, form_of, page, writer
from bot.web.session import Session
from harness_store import store
from harness_store.db import transaction
from harness_store.errors import HarnessStoreError, InvalidName
from harness_store.models import HarnessVersion, SkillVersion
from harness_store.names import validate_name
from harness_store.skills import MAX_FILES, SKILL_FILE
from harness_store.store import V

MESSAGE_MAX = 2000
NEW_SKILL_TEMPLATE = (
    "---\nname: {name}\ndescription: What this skill does, and when the agent should use it.\n"
    "---\n\n# {name}\n"
)


@dataclass(frozen=True)
class FileEntry:
    """One file of the skill editor as submitted: kept as typed when the store refuses it."""

    path: str
    content: str
    removed: bool = False


@dataclass
class Draft:
    """What the editor shows: the text (or files), the message and the version it started from."""

    content: str = ""
    files: list[FileEntry] | None = None
    message: str = ""
    base: int | None = None


async def editor(request: Request, shelf: Shelf[V]) -> Response:
    """The editor, filled with the current version (or version `?from=N`)."""
    writer(request)
    name = name_of(request, shelf)
    start = version_number(request.query_params.get("from"))
    async with deps_of(request).sessions() as session:
        current = await current_or_404(request, session, shelf, name)
        source = (
            current if start is None else await version_or_404(request, session, shelf, name, start)
        )
    draft = _draft_of(source)
    draft.base = current.version
    if start is not None and start != current.version:
        draft.message = f"Based on version {start}"
    return _editor_page(request, shelf, name, draft, None, 200)


def _preview(name: str, draft: Draft, current: HarnessVersion | SkillVersion) -> Preview:
    if isinstance(current, HarnessVersion):
        return preview_harness(draft.content, name, current.version, current.content)
    files = {entry.path: entry.content for entry in draft.files or [] if not entry.removed}
    return preview_skill(files, current.version, current.files)


def _message_missing(draft: Draft) -> str | None:
    if draft.message:
        return None
    return "Write a message: what this version changes and why (the version list shows it)."


def _draft_of(version: HarnessVersion | SkillVersion) -> Draft:
    if isinstance(version, HarnessVersion):
        return Draft(content=version.content)
    return Draft(files=[FileEntry(path, text) for path, text in sorted(version.files.items())])


async def publish(request: Request, shelf: Shelf[V]) -> Response:
    """Publish the editor's text as the next version of the name in the path (or, with
    `intent=preview`, show what publishing it would change)."""
    user = writer(request)
    name = name_of(request, shelf)
    form = await form_of(request)
    draft, problem = _draft_from_form(shelf, form)
    if form.get("intent") == "preview":
        async with deps_of(request).sessions() as session:
            current = await current_or_404(request, session, shelf, name)
        preview = _preview(name, draft, current)
        return _editor_page(request, shelf, name, draft, None, 200, preview=preview)
    problem = problem or _message_missing(draft)
    async with transaction(deps_of(request).sessions) as session:
        current = await current_or_404(request, session, shelf, name)
        if draft.base is not None and draft.base != current.version:
            problem = (
                f"Version {current.version} was published since you opened the editor. Compare"
                f" it with version {draft.base}, then publish again to replace it."
            )
            compare = f"{shelf.path(name, 'diff')}?from={draft.base}&to={current.version}"
            draft.base = current.version
            return _editor_page(request, shelf, name, draft, problem, 409, compare=compare)
        if problem is not None:
            return _editor_page(request, shelf, name, draft, problem, 422)
        try:
            created = await _publish(session, shelf, name, draft, user)
        except HarnessStoreError as error:
            return _editor_page(request, shelf, name, draft, str(error), 422)
    if created.version == current.version:
        notice = f"Nothing to publish: this is the same as version {current.version}."
        return _editor_page(request, shelf, name, draft, None, 200, notice=notice)
    return RedirectResponse(shelf.version_path(created), status_code=303)


async def _publish(
    session: AsyncSession,
    shelf: Shelf[V],
    name: str,
    draft: Draft,
    user: Session,
    *,
    first: bool = False,
) -> HarnessVersion | SkillVersion:
    if shelf.kind == "harness":
        return await store.publish_harness(
            session, name, draft.content, author=user.label, message=draft.message, if_absent=first
        )
    files = {entry.path: entry.content for entry in draft.files or [] if not entry.removed}
    return await store.publish_skill(
        session, name, files, author=user.label, message=draft.message, if_absent=first
    )


def _draft_from_form(shelf: AnyShelf, form: dict[str, str]) -> tuple[Draft, str | None]:
    """The submitted draft, and the first problem the form itself shows (before the store)."""
    message = form.get("message", "").strip()
    draft = Draft(message=message[:MESSAGE_MAX], base=version_number(form.get("base")))
    problem = (
        None if len(message) <= MESSAGE_MAX else f"The message is over {MESSAGE_MAX} characters."
    )
    if shelf.kind == "harness":
        draft.content = form.get("content", "")
        return draft, problem
    draft.files, files_problem = _files_from_form(form)
    return draft, problem or files_problem


def _files_from_form(form: dict[str, str]) -> tuple[list[FileEntry], str | None]:
    entries: list[FileEntry] = []
    problem: str | None = None
    seen: set[str] = set()
    # The editor numbers its files from 0, the empty "add a file" pair last.
    for index in range(MAX_FILES + 2):
        if f"path-{index}" not in form and f"content-{index}" not in form:
            break
        path = form.get(f"path-{index}", "").strip()
        content = form.get(f"content-{index}", "")
        removed = form.get(f"remove-{index}") == "1"
        if not path and not content.strip():
            continue
        entries.append(FileEntry(path, content, removed))
        if removed or problem is not None:
            continue
        if not path:
            problem = f"File {len(entries)} has contents but no path."
        elif path in seen:
            problem = f"{path!r} is given twice."
        seen.add(path)
    return entries, problem


def _editor_page(
    request: Request,
    shelf: AnyShelf,
    name: str | None,
    draft: Draft,
    problem: str | None,
    status: int,
    *,
    notice: str | None = None,
    new_name: str = "",
    compare: str | None = None,
    preview: Preview | None = None,
) -> Response:
    """The editor of a new version of `name`, or (`name` None) of a new name's first one."""
    template = "harness_edit.html" if shelf.kind == "harness" else "skill_edit.html"
    title = f"New version of {name}" if name else f"New {shelf.noun}"
    values = context(
        shelf,
        title=title,
        name=name,
        new_name=new_name,
        draft=draft,
        problem=problem,
        notice=notice,
        compare=compare,
        preview=preview,
    )
    return page(request, template, values, status)


async def new_name_form(request: Request, shelf: Shelf[V]) -> Response:
    """The editor of a name that does not exist yet."""
    writer(request)
    draft = Draft(message="First version")
    if shelf.kind == "skill":
        draft.files = [FileEntry(SKILL_FILE, NEW_SKILL_TEMPLATE.format(name="my-skill"))]
    return _editor_page(request, shelf, None, draft, None, 200)


async def publish_new_name(request: Request, shelf: Shelf[V]) -> Response:
    """Publish version 1 of a new name; an existing name is refused, never overwritten."""
    user = writer(request)
    form = await form_of(request)
    name = form.get("name", "").strip()
    draft, problem = _draft_from_form(shelf, form)
    draft.base = None

    def refuse(problem: str) -> Response:
        return _editor_page(request, shelf, None, draft, problem, 422, new_name=name)

    try:
        validate_name(shelf.kind, name)
    except InvalidName as error:
        return refuse(str(error))
    if problem is not None:
        return refuse(problem)
    async with transaction(deps_of(request).sessions) as session:
        if await store.current(session, shelf.model, name) is not None:
            return refuse(
                f"A {shelf.noun} named {name!r} already exists: publish a new version of it"
                " from its page instead."
            )
        missing = _message_missing(draft)
        if missing is not None:
            return refuse(missing)
        try:
            created = await _publish(session, shelf, name, draft, user, first=True)
        except HarnessStoreError as error:
            return refuse(str(error))
    return RedirectResponse(shelf.version_path(created), status_code=303)


async def rollback(request: Request, shelf: Shelf[V]) -> Response:
    """Publish the content of an old version again, as the newest version."""
    user = writer(request)
    name = name_of(request, shelf)
    form = await form_of(request)
    number = version_number(form.get("version"))
    if number is None:
        raise bad_request(request, "version: must be the number of the version to roll back to.")
    note = form.get("message", "").strip()[:MESSAGE_MAX]
    async with transaction(deps_of(request).sessions) as session:
        target = await version_or_404(request, session, shelf, name, number)
        # Published like any edit, so the message can say why (store.rollback's is fixed).
        draft = _draft_of(target)
        draft.message = f"roll back to version {number}" + (f": {note}" if note else "")
        try:
            created = await _publish(session, shelf, name, draft, user)
        except HarnessStoreError as error:
            # Only when the store's checks grew stricter since that version was published.
            message = f"Version {number} cannot be published again: {error}"
            raise Refused(
                page(request, "error.html", {"title": "Cannot roll back", "message": message}, 422)
            ) from None
    return RedirectResponse(shelf.version_path(created), status_code=303)
