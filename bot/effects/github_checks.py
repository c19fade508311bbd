"""The outbox's check-run performer: one check run per gate (and `openase` for the ticket),
found again by its deterministic external id, with its annotations sent 50 a request and
the progress saved after each, so a retry never shows one twice."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.effects.annotations import MAX_ANNOTATIONS
from bot.effects.fields import head, repo_of, tail, text_of
from bot.effects.outbox import EffectContext, EffectRefused

Json = dict[str, Any]

MAX_TEXT = 65535  # GitHub's limit for a check run's summary and text


ANNOTATIONS_PER_REQUEST = 50  # GitHub's limit per create/update request


RETRY_ACTION: Json = {
    "label": "Retry",  # at most 20 characters
    "identifier": "retry",  # at most 20; comes back in check_run.requested_action
    "description": "Run this ticket's gates again",  # at most 40
}


async def check_run(ctx: EffectContext, payload: Json) -> Json:
    """Create or update the check run with this external id on this head sha."""
    repo = repo_of(payload)
    head_sha, name = text_of(payload, "head_sha"), text_of(payload, "name")
    external_id = text_of(payload, "external_id")
    annotations = [_annotation(a) for a in payload.get("annotations") or []][:MAX_ANNOTATIONS]
    output: Json = {
        "title": text_of(payload, "title")[:255],
        "summary": head(text_of(payload, "summary"), MAX_TEXT),
    }
    if isinstance(payload.get("text"), str) and payload["text"]:
        output["text"] = tail(payload["text"], MAX_TEXT)
    # GitHub appends annotations on every update, so sending a batch twice would show it
    # twice: progress is saved after each request, and a retry resumes after it.
    progress = _same_run(ctx.progress, head_sha, external_id)
    if progress is None:
        known = _same_run(ctx.previous, head_sha, external_id)
        run_id = (
            int(known["check_run_id"])
            if known
            else await ctx.github.find_check_run(
                repo, head_sha, ctx.installation(), name=name, external_id=external_id
            )
        )
        body = _check_run_body(payload, output, annotations[:ANNOTATIONS_PER_REQUEST])
        if run_id is None:
            answer = await ctx.github.create_check_run(repo, head_sha, body, ctx.installation())
        else:
            answer = await ctx.github.update_check_run(repo, run_id, body, ctx.installation())
        progress = {
            "check_run_id": int(answer["id"]),
            "html_url": answer.get("html_url"),
            "head_sha": head_sha,
            "external_id": external_id,
            "annotations_sent": min(len(annotations), ANNOTATIONS_PER_REQUEST),
            "created": run_id is None,
        }
        if annotations:
            await ctx.checkpoint(progress)
    sent = int(progress["annotations_sent"])
    while sent < len(annotations):
        batch = annotations[sent : sent + ANNOTATIONS_PER_REQUEST]
        await ctx.github.update_check_run(
            repo,
            int(progress["check_run_id"]),
            {"output": {**output, "annotations": batch}},
            ctx.installation(),
        )
        sent += len(batch)
        progress = {**progress, "annotations_sent": sent}
        await ctx.checkpoint(progress)
    state = payload.get("conclusion") or payload.get("status")
    return {**progress, "summary": f"check run {name}: {state}"}


def _check_run_body(payload: Json, output: Json, annotations: list[Json]) -> Json:
    status = text_of(payload, "status")
    conclusion = payload.get("conclusion")
    if status == "completed" and not conclusion:
        raise EffectRefused("a completed check run needs a conclusion")
    body: Json = {
        "name": text_of(payload, "name"),
        "external_id": text_of(payload, "external_id"),
        "status": "completed" if conclusion else status,
        "output": {**output, "annotations": annotations} if annotations else output,
    }
    if isinstance(payload.get("details_url"), str):
        body["details_url"] = payload["details_url"]
    now = _iso_now()
    if status == "in_progress" or isinstance(payload.get("started_at"), str):
        body["started_at"] = payload.get("started_at") or now
    if conclusion:
        body["conclusion"] = conclusion
        body["completed_at"] = payload.get("completed_at") or now
    actions = payload.get("actions")
    if actions is None and conclusion == "failure":
        actions = [RETRY_ACTION]
    if actions:
        body["actions"] = [_action(action) for action in actions[:3]]  # GitHub allows three
    return body


def _annotation(raw: Json) -> Json:
    annotation: Json = {
        "path": str(raw["path"]),
        "start_line": int(raw["start_line"]),
        "end_line": int(raw.get("end_line") or raw["start_line"]),
        "annotation_level": raw.get("annotation_level", "failure"),
        "message": head(str(raw.get("message") or ""), 4000) or "(no message)",
    }
    # Columns only on a single line, per GitHub.
    if annotation["start_line"] == annotation["end_line"]:
        for key in ("start_column", "end_column"):
            if isinstance(raw.get(key), int):
                annotation[key] = raw[key]
    if isinstance(raw.get("title"), str):
        annotation["title"] = raw["title"][:255]
    return annotation


def _action(raw: Json) -> Json:
    return {
        "label": str(raw["label"])[:20],
        "identifier": str(raw["identifier"])[:20],
        "description": str(raw.get("description") or raw["label"])[:40],
    }


def _same_run(result: Json | None, head_sha: str, external_id: str) -> Json | None:
    if not result or not isinstance(result.get("check_run_id"), int):
        return None
    if result.get("head_sha") != head_sha or result.get("external_id") != external_id:
        return None
    return result


def _iso_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
