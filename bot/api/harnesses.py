"""`/api/v1/harnesses` and `/api/v1/skills`: the harness store as JSON, read and written.

Routes, the same under `/skills` (where `content` is `files`, `{path: text}`):
    GET  /harnesses                        {"harnesses": [{name, current_version, versions,
                                            updated_at, author, message, used_by: [{repo,
                                            workflow}]}]}, by name
    GET  /harnesses/{name}                 the current version, content included
    GET  /harnesses/{name}/versions        {"name", "versions": [{version, author, message,
                                            created_at, content_hash, runs}]}, newest first
    GET  /harnesses/{name}/versions/{n}    one version, content and `used_by_runs` included
    GET  /harnesses/{name}/diff?from=A&to=B  {"name", "from", "to", "diff": unified text}
    POST /harnesses/{name}/versions        {content, message?, author?}: 201 with the new
                                            version and `"created": true`; 200 and
                                            `"created": false` when it equals the current one
    POST /harnesses/{name}/rollback        {version, message?, author?}: publishes what
                                            `version` held, answered like a publish

Writes need the admin token as a bearer token always, even where reads are open: without
OPENASE_ADMIN_TOKEN on the server they are refused with 403 (the mount's middleware checks
the token when it is set). A malformed body is a 400 whose `error` starts with the field at
fault; content the store refuses (a template that does not parse, a skill without front
matter) is a 422 saying why, with the template's line where there is one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import structlog
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from bot.api.harness_usage import harness_usage, run_counts, skill_usage, version_runs
from bot.api.request import ApiError, Query, admin_token, deps_of, iso, json_endpoint
from harness_store import store
from harness_store.db import transaction
from harness_store.errors import HarnessStoreError, InvalidName, NotFound, PublishConflict
from harness_store.models import HarnessVersion, SkillVersion
from harness_store.names import validate_name

log = structlog.get_logger(__name__)

V = TypeVar("V", HarnessVersion, SkillVersion)
Endpoint = Callable[[Request], Awaitable[Response]]

# A whole request body, read before parsing: a skill may hold 512 KB of text (the store's
# cap), which JSON escaping can swell.
MAX_BODY_BYTES = 2 * 1024 * 1024
MAX_CONTENT_BYTES = 256 * 1024
MAX_FILES_BYTES = 1024 * 1024
MAX_MESSAGE_CHARS = 4000
MAX_AUTHOR_CHARS = 200
DEFAULT_AUTHOR = "api"
RUNS_LIMIT = 50
# Versions are Postgres integers: nine digits keep every accepted one in range.
_VERSION = re.compile(r"[0-9]{1,9}")
_WRITES_NEED_SETUP = (
    "writes need an admin token: set OPENASE_ADMIN_TOKEN on the server and send it as "
    "`Authorization: Bearer <token>`"
)


def store_routes() -> list[BaseRoute]:
    """The routes of both kinds, relative to the `/api/v1` mount."""
    return [*_routes(HarnessVersion, "harnesses"), *_routes(SkillVersion, "skills")]


def _routes(model: type[V], plural: str) -> list[BaseRoute]:
    base = f"/{plural}"
    return [
        Route(base, _list_endpoint(model, plural), methods=["GET"]),
        Route(base + "/{name}", _show_endpoint(model), methods=["GET"]),
        Route(base + "/{name}/versions", _versions_endpoint(model), methods=["GET"]),
        Route(base + "/{name}/versions", _publish_endpoint(model), methods=["POST"]),
        Route(base + "/{name}/versions/{version}", _version_endpoint(model), methods=["GET"]),
        Route(base + "/{name}/diff", _diff_endpoint(model), methods=["GET"]),
        Route(base + "/{name}/rollback", _rollback_endpoint(model), methods=["POST"]),
    ]


# --- reads ---------------------------------------------------------------------------------


def _list_endpoint(model: type[V], plural: str) -> Endpoint:
    @json_endpoint
    async def list_names(request: Request) -> Response:
        Query(request, ())
        ranked = select(
            model.name,
            model.version,
            model.author,
            model.message,
            model.created_at,
            func.count().over(partition_by=model.name).label("versions"),
            func.row_number()
            .over(partition_by=model.name, order_by=model.version.desc())
            .label("rank"),
        ).subquery()
        current = (
            select(*(c for c in ranked.c if c.name != "rank"))
            .where(ranked.c.rank == 1)
            .order_by(ranked.c.name)
        )
        async with deps_of(request).sessions() as session:
            rows = (await session.execute(current)).all()
            usage = await (harness_usage if model.kind == "harness" else skill_usage)(session)
        items = [
            {
                "name": name,
                "current_version": version,
                "versions": versions,
                "updated_at": iso(created_at),
                "author": author,
                "message": message,
                "used_by": [
                    {"repo": repo, "workflow": workflow} for repo, workflow in usage.get(name, [])
                ],
            }
            for name, version, author, message, created_at, versions in rows
        ]
        return JSONResponse({plural: items})

    return list_names


def _show_endpoint(model: type[V]) -> Endpoint:
    @json_endpoint
    async def show(request: Request) -> Response:
        Query(request, ())
        name = _name(model, request)
        async with deps_of(request).sessions() as session:
            found = await _store_call(store.require_current(session, model, name))
        return JSONResponse(_described(found, content=True))

    return show


def _versions_endpoint(model: type[V]) -> Endpoint:
    @json_endpoint
    async def versions(request: Request) -> Response:
        Query(request, ())
        name = _name(model, request)
        async with deps_of(request).sessions() as session:
            rows = await store.list_versions(session, model, name)
            if not rows:
                raise ApiError(404, f"no {model.kind} named {name!r}")
            counts = await run_counts(session, rows)
        items = [{**_described(row, name=False), "runs": counts[row.id]} for row in rows]
        return JSONResponse({"name": name, "versions": items})

    return versions


def _version_endpoint(model: type[V]) -> Endpoint:
    @json_endpoint
    async def version(request: Request) -> Response:
        Query(request, ())
        name = _name(model, request)
        number = _version_number("version", request.path_params["version"])
        async with deps_of(request).sessions() as session:
            found = await _store_call(store.get_version(session, model, name, number))
            runs = await version_runs(session, found, limit=RUNS_LIMIT)
            counts = await run_counts(session, [found])
        body = _described(found, content=True)
        body["runs"] = counts[found.id]
        body["used_by_runs"] = [
            {
                "run_id": run.run_id,
                "ticket_id": run.ticket_id,
                "ticket_key": run.ticket_key,
                "state": run.state,
                "status": run.status,
                "created_at": iso(run.created_at),
            }
            for run in runs
        ]
        return JSONResponse(body)

    return version


def _diff_endpoint(model: type[V]) -> Endpoint:
    @json_endpoint
    async def diff(request: Request) -> Response:
        query = Query(request, {"from", "to"})
        name = _name(model, request)
        old, new = (_version_number(key, query.one(key)) for key in ("from", "to"))
        async with deps_of(request).sessions() as session:
            text = await _store_call(store.diff_versions(session, model, name, old, new))
        return JSONResponse({"name": name, "from": old, "to": new, "diff": text})

    return diff


# --- writes --------------------------------------------------------------------------------


def _publish_endpoint(model: type[V]) -> Endpoint:
    field = "content" if model.kind == "harness" else "files"

    @json_endpoint
    async def publish(request: Request) -> Response:
        body = await _write_body(request, required={field}, optional={"message", "author"})
        name = _name(model, request)
        content = _content(body) if model.kind == "harness" else _files(body)
        message, author = _message(body), _author(body)
        async with transaction(deps_of(request).sessions) as session:
            before = await store.current(session, model, name)
            row = await _store_call(_publish_row(session, model, name, content, author, message))
            created = before is None or row.id != before.id
            if created:
                await session.refresh(row)  # created_at comes from the database
        return _published(row, created, author)

    return publish


def _rollback_endpoint(model: type[V]) -> Endpoint:
    @json_endpoint
    async def rollback(request: Request) -> Response:
        body = await _write_body(request, required={"version"}, optional={"message", "author"})
        name = _name(model, request)
        number = body["version"]
        # bool is an int to Python; `true` is no version number.
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number < 10**9:
            raise ApiError(400, "version: must be a whole number from 1")
        message = _message(body) or f"roll back to version {number}"
        author = _author(body)
        async with transaction(deps_of(request).sessions) as session:
            target = await _store_call(store.get_version(session, model, name, number))
            before = await store.require_current(session, model, name)
            content = target.content if isinstance(target, HarnessVersion) else target.files
            # Published through the public path (not store.rollback) so the message is kept.
            row = await _store_call(_publish_row(session, model, name, content, author, message))
            created = row.id != before.id
            if created:
                await session.refresh(row)
        return _published(row, created, author)

    return rollback


async def _publish_row(
    session: AsyncSession,
    model: type[V],
    name: str,
    content: str | Mapping[str, str],
    author: str,
    message: str,
) -> V:
    if isinstance(content, str):
        row: HarnessVersion | SkillVersion = await store.publish_harness(
            session, name, content, author=author, message=message
        )
    else:
        row = await store.publish_skill(session, name, content, author=author, message=message)
    assert isinstance(row, model)  # the body was read for this model's kind
    return row


def _published(row: HarnessVersion | SkillVersion, created: bool, author: str) -> Response:
    if created:
        log.info("store_version_published", kind=row.kind, label=row.label, author=author)
    return JSONResponse(
        {**_described(row), "created": created}, status_code=201 if created else 200
    )


async def _write_body(
    request: Request, *, required: set[str], optional: set[str]
) -> dict[str, Any]:
    """The JSON object a write carries, after the token and the shape were checked."""
    Query(request, ())
    if admin_token(deps_of(request).settings) is None:
        raise ApiError(403, _WRITES_NEED_SETUP)
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/json":
        raise ApiError(415, "body: send JSON with `Content-Type: application/json`")
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"body: larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ApiError(400, f"body: not valid JSON ({error})") from None
    except RecursionError:
        raise ApiError(400, "body: nested too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object")
    allowed = required | optional
    for key in sorted(body):
        if key not in allowed:
            raise ApiError(400, f"{key[:40]}: unknown field; expected {', '.join(sorted(allowed))}")
    for key in sorted(required - set(body)):
        raise ApiError(400, f"{key}: missing")
    return body


def _text(field: str, value: object) -> str:
    """A string Postgres can store: UTF-8 encodable (JSON allows lone surrogates)."""
    if not isinstance(value, str):
        raise ApiError(400, f"{field}: must be a string")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(400, f"{field}: not valid Unicode text (a lone surrogate)") from None
    return value


def _content(body: Mapping[str, Any]) -> str:
    content = _text("content", body["content"])
    if len(content.encode()) > MAX_CONTENT_BYTES:
        raise ApiError(400, f"content: larger than {MAX_CONTENT_BYTES} bytes")
    return content


def _files(body: Mapping[str, Any]) -> dict[str, str]:
    files = body["files"]
    if not isinstance(files, dict):
        raise ApiError(400, "files: must be an object of {path: text}")
    total = 0
    for path, text in files.items():
        shown = f"files: {_text('files', path)[:80]!r}"
        total += len(path.encode()) + len(_text(shown, text).encode())
    if total > MAX_FILES_BYTES:
        raise ApiError(400, f"files: larger than {MAX_FILES_BYTES} bytes in all")
    return files


def _message(body: Mapping[str, Any]) -> str:
    message = body.get("message")
    if message is None:
        return ""
    message = _text("message", message)
    if len(message) > MAX_MESSAGE_CHARS:
        raise ApiError(400, f"message: longer than {MAX_MESSAGE_CHARS} characters")
    if "\x00" in message:
        raise ApiError(400, "message: contains a NUL character")
    return message.strip()


def _author(body: Mapping[str, Any]) -> str:
    author = body.get("author")
    if author is None:
        return DEFAULT_AUTHOR
    author = _text("author", author)
    if not author.strip():
        raise ApiError(400, "author: must not be blank")
    if len(author) > MAX_AUTHOR_CHARS or any(c < " " for c in author):
        raise ApiError(400, f"author: at most {MAX_AUTHOR_CHARS} characters, no control characters")
    return author.strip()


# --- shared --------------------------------------------------------------------------------

T = TypeVar("T")


async def _store_call(work: Awaitable[T]) -> T:
    """The store's refusals as answers: 404 for what is not there, 422 for what it rejects."""
    try:
        return await work
    except NotFound as error:
        raise ApiError(404, str(error)) from None
    except PublishConflict as error:
        raise ApiError(409, str(error)) from None
    except HarnessStoreError as error:
        raise ApiError(422, str(error)) from None


def _name(model: type[V], request: Request) -> str:
    try:
        return validate_name(model.kind, request.path_params["name"])
    except InvalidName as error:
        raise ApiError(400, f"name: {error}") from None


def _version_number(key: str, value: str | None) -> int:
    if value is None:
        raise ApiError(400, f"{key}: missing; give a version number")
    if not _VERSION.fullmatch(value) or int(value) < 1:
        raise ApiError(400, f"{key}: must be a whole number from 1, got {value[:40]!r}")
    return int(value)


def _described(
    row: HarnessVersion | SkillVersion, *, content: bool = False, name: bool = True
) -> dict[str, Any]:
    described: dict[str, Any] = {"name": row.name} if name else {}
    described |= {
        "version": row.version,
        "author": row.author,
        "message": row.message,
        "created_at": iso(row.created_at),
        "content_hash": row.content_hash,
    }
    if content:
        if isinstance(row, HarnessVersion):
            described["content"] = row.content
        else:
            described["files"] = row.files
    return described
