"""GitHub's App manifest flow on the fake GitHub.

- The web half (`github_web_app`, a real HTTP app a browser can use): `POST
  /settings/apps/new?state=` and `/organizations/ORG/settings/apps/new?state=` take the
  `manifest` form field, show a confirmation page as GitHub does, and on "Create GitHub App"
  send the browser to the manifest's `redirect_url` with `code` and `state`.
- The API half (`POST /app-manifests/{code}/conversions`, no authentication): each code works
  once, for an hour; the answer is the App created from the manifest with its secrets, in
  the shape GitHub documents (checked against githubkit's model). The App is the fake's own
  (its id and private key), so the bot can act as it right away.

GitHub's checks on the manifest are played too: `url` is required, `hook_attributes`
needs a `url` whenever it is there, and unknown keys are refused.
"""

from __future__ import annotations

import html
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
from githubkit.compat import type_validate_python
from githubkit_schemas.latest.models import AppManifestsCodeConversionsPostResponse201
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from tests.fakes.github_api import FakeGitHubAPI

Json = dict[str, Any]
CODE_LIFETIME = timedelta(hours=1)
# GitHub's list of manifest parameters. It repeats bot/config/manifest.py's on purpose: a
# fake that imported ours would agree with our code by construction.
MANIFEST_KEYS = frozenset(
    {
        "name",
        "url",
        "hook_attributes",
        "redirect_url",
        "callback_urls",
        "setup_url",
        "description",
        "public",
        "default_events",
        "default_permissions",
        "request_oauth_on_install",
        "setup_on_update",
    }
)


class ManifestRefused(ValueError):
    """What GitHub's page says of a manifest it will not create an App from."""


@dataclass
class Registered:
    """An App created from a manifest, and its one-time code."""

    manifest: Json
    owner: str
    state: str | None
    created_at: datetime
    webhook_secret: str | None
    client_secret: str = field(default_factory=lambda: secrets.token_hex(20))


@dataclass
class FakeAppRegistrations:
    fake: FakeGitHubAPI
    owner: str = "octocat"  # the signed-in GitHub user
    codes: dict[str, Registered] = field(default_factory=dict)
    converted: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fake.route("POST", r"/app-manifests/(?P<code>[^/]+)/conversions", self._convert)

    def create(
        self, manifest: Json, *, organization: str | None = None, state: str | None = None
    ) -> str:
        """The user confirmed on GitHub's page: the App exists; the code GitHub hands back."""
        _check(manifest)
        code = secrets.token_hex(10)
        hook = manifest.get("hook_attributes")
        self.codes[code] = Registered(
            manifest=manifest,
            owner=organization or self.owner,
            state=state,
            created_at=self.fake.clock(),
            webhook_secret=secrets.token_hex(20) if hook else None,
        )
        return code

    def _convert(self, request: httpx.Request, code: str) -> httpx.Response:
        registered = self.codes.pop(code, None)
        if registered is None or self.fake.clock() - registered.created_at > CODE_LIFETIME:
            return self.fake.answer(404, {"message": "Not Found"})
        self.converted.append(code)
        app = self._app_from(registered)
        type_validate_python(AppManifestsCodeConversionsPostResponse201, app)
        return self.fake.answer(201, app)

    def _app_from(self, registered: Registered) -> Json:
        manifest = registered.manifest
        slug = "-".join(str(manifest["name"]).lower().split())
        web = self.fake.web_url
        now = registered.created_at.isoformat()
        return {
            "id": self.fake.app_id,
            "slug": slug,
            "node_id": "A_kwDOAAAB",
            "client_id": f"Iv1.{secrets.token_hex(8)}",
            "owner": _user(self.fake.api_url, web, registered.owner),
            "name": manifest["name"],
            "description": manifest.get("description", ""),
            "external_url": manifest["url"],
            "html_url": f"{web}/apps/{slug}",
            "created_at": now,
            "updated_at": now,
            "permissions": manifest.get("default_permissions", {}),
            "events": manifest.get("default_events", []),
            "client_secret": registered.client_secret,
            "webhook_secret": registered.webhook_secret,
            "pem": self.fake.private_key_pem,
        }


def _user(api: str, web: str, login: str) -> Json:
    """A simple-user object as the REST API shows one."""
    user = f"{api}/users/{login}"
    return {
        "login": login,
        "id": 1,
        "node_id": "MDQ6VXNlcjE=",
        "avatar_url": f"{web}/images/error/octocat_happy.gif",
        "gravatar_id": "",
        "url": user,
        "html_url": f"{web}/{login}",
        **{
            f"{name}_url": f"{user}/{name}"
            for name in (
                "followers",
                "following",
                "gists",
                "starred",
                "subscriptions",
                "organizations",
                "repos",
                "events",
                "received_events",
            )
        },
        "type": "User",
        "site_admin": False,
    }


def _check(manifest: Json) -> None:
    unknown = sorted(set(manifest) - MANIFEST_KEYS)
    if unknown:
        raise ManifestRefused(f"unknown manifest keys {unknown}")
    if not isinstance(manifest.get("url"), str) or not manifest["url"]:
        raise ManifestRefused('Error "url" wasn\'t supplied.')
    hook = manifest.get("hook_attributes")
    if hook is not None and (not isinstance(hook, dict) or not hook.get("url")):
        raise ManifestRefused('Error "url" wasn\'t supplied.')  # GitHub names no parent
    if not isinstance(manifest.get("redirect_url"), str):
        raise ManifestRefused("no redirect_url: GitHub would not send the code anywhere")


def github_web_app(registrations: FakeAppRegistrations) -> Starlette:
    """GitHub's web pages of the flow, for a browser: confirm, then back with a code."""

    async def new_app(request: Request) -> Response:
        form = await request.form()
        text = form.get("manifest")
        try:
            manifest = json.loads(text) if isinstance(text, str) else None
            if not isinstance(manifest, dict):
                raise ManifestRefused("The configuration does not appear to be a valid manifest.")
            _check(manifest)
        except (ValueError, ManifestRefused) as exc:
            return HTMLResponse(
                f"<p>Invalid GitHub App configuration. {html.escape(str(exc))}</p>", 422
            )
        organization = request.path_params.get("org")
        state = request.query_params.get("state", "")
        owner = organization or registrations.owner
        hidden = html.escape(
            json.dumps({"manifest": manifest, "org": organization, "state": state})
        )
        return HTMLResponse(
            "<!doctype html><title>Create GitHub App</title>"
            f"<h1>Create GitHub App for {html.escape(owner)}</h1>"
            f"<p>{html.escape(str(manifest['name']))}</p>"
            '<form method="post" action="/settings/apps/new/confirm">'
            f'<input type="hidden" name="pending" value="{hidden}">'
            '<button type="submit">Create GitHub App</button></form>'
        )

    async def confirm(request: Request) -> Response:
        form = await request.form()
        pending = json.loads(str(form["pending"]))
        manifest: Json = pending["manifest"]
        code = registrations.create(manifest, organization=pending["org"], state=pending["state"])
        query = urlencode({"code": code, "state": pending["state"]})
        return RedirectResponse(f"{manifest['redirect_url']}?{query}", status_code=302)

    return Starlette(
        routes=[
            Route("/settings/apps/new", new_app, methods=["POST"]),
            Route("/organizations/{org}/settings/apps/new", new_app, methods=["POST"]),
            Route("/settings/apps/new/confirm", confirm, methods=["POST"]),
        ]
    )
