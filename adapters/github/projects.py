"""GitHub Projects (v2) boards through GraphQL (Projects v2 has no REST API): an issue's
cards, moving a card to a column, and what a card is.

GraphQL reports most failures inside a 200: a used-up limit raises RateLimited, what
GitHub could not find RequestRejected (404), anything else TransientError (retried).
FORBIDDEN errors are not raised: GitHub answers null for what the App may not see and
still answers the rest, so callers get them beside the data and decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx

from adapters.base import Json, ProjectItemInfo, ProjectItems
from adapters.errors import RateLimited, RequestRejected, TransientError
from adapters.github.transport import GitHubTransport, checked_full_name, graphql_url

# GitHub's GraphQL rate limit answer without a reset header: it asks for a minute.
RATE_LIMIT_WAIT = timedelta(seconds=60)

ISSUE_ITEMS = """
query ProjectItemsOfIssue($owner: String!, $name: String!, $number: Int!, $field: String!,
                          $first: Int!) {
  repository(owner: $owner, name: $name) {
    issue(number: $number) {
      id
      projectItems(first: $first, includeArchived: false) {
        nodes {
          id
          project {
            id
            title
            closed
            field(name: $field) {
              ... on ProjectV2SingleSelectField { id name options { id name } }
            }
          }
          fieldValueByName(name: $field) {
            ... on ProjectV2ItemFieldSingleSelectValue { name optionId }
          }
        }
      }
    }
  }
}
"""

SET_OPTION = """
mutation SetProjectStatus($project: ID!, $item: ID!, $field: ID!, $option: String!) {
  updateProjectV2ItemFieldValue(input: {projectId: $project, itemId: $item, fieldId: $field,
                                        value: {singleSelectOptionId: $option}}) {
    projectV2Item { id }
  }
}
"""

ITEM_NODE = """
query ProjectItemNode($id: ID!, $field: String!) {
  node(id: $id) {
    ... on ProjectV2Item {
      id
      project { id }
      content { ... on Issue { number repository { nameWithOwner } } }
      fieldValueByName(name: $field) {
        ... on ProjectV2ItemFieldSingleSelectValue { name }
      }
    }
  }
}
"""


@dataclass(frozen=True)
class GraphQLAnswer:
    """A GraphQL answer's data, and the FORBIDDEN errors for the parts that are null."""

    data: Json
    forbidden: list[Json]


class ProjectEndpoints(GitHubTransport):
    async def project_items_of_issue(
        self, full_name: str, number: int, installation_id: int, *, field: str, first: int
    ) -> ProjectItems:
        """The issue's cards on (at most `first`) boards, each with the board's single-select
        field `field` and the option the card sits in. RequestRejected(404) when GitHub does
        not know the issue."""
        owner, name = checked_full_name(full_name).split("/")
        variables = {"owner": owner, "name": name, "number": number, "field": field}
        answer = await self.graphql(
            ISSUE_ITEMS,
            {**variables, "first": first},
            installation_id,
            f"the project items of {full_name}#{number}",
        )
        issue = (answer.data.get("repository") or {}).get("issue") or {}
        nodes = (issue.get("projectItems") or {}).get("nodes") or []
        # An item the App may not read comes back null (its project is non-null in the schema).
        items = [node for node in nodes if isinstance(node, dict) and node.get("project")]
        return ProjectItems(items=items, hidden=len(nodes) - len(items), forbidden=answer.forbidden)

    async def set_project_item_option(
        self, project_id: str, item_id: str, field_id: str, option_id: str, installation_id: int
    ) -> bool:
        """Put a card in an option of a single-select field; False when GitHub refused
        (the App may not write the board). RequestRejected(404) when the card is gone."""
        variables = {"project": project_id, "item": item_id, "field": field_id, "option": option_id}
        what = f"moving card {item_id}"
        answer = await self.graphql(SET_OPTION, variables, installation_id, what)
        if answer.forbidden:
            return False
        if not answer.data.get("updateProjectV2ItemFieldValue"):
            raise TransientError(f"GitHub GraphQL, {what}: no result")
        return True

    async def project_item(
        self, item_id: str, installation_id: int, *, field: str
    ) -> ProjectItemInfo | None:
        """The issue on a card and the option of single-select field `field` it sits in.

        None when the item is gone or is not a project item; RequestRejected (403) when the
        App may not read the board.
        """
        what = f"project item {item_id}"
        try:
            answer = await self.graphql(
                ITEM_NODE, {"id": item_id, "field": field}, installation_id, what
            )
        except RequestRejected as exc:
            if exc.status == 404:
                return None
            raise
        node = answer.data.get("node")
        if answer.forbidden and not node:
            raise RequestRejected(403, f"GitHub refused {what}: {_messages(answer.forbidden)}")
        if not isinstance(node, dict) or "id" not in node:
            return None  # deleted meanwhile, or the id is not a ProjectV2Item
        content = node.get("content") or {}  # {} for pull requests and draft issues
        repo = (content.get("repository") or {}).get("nameWithOwner")
        number = content.get("number")
        status = (node.get("fieldValueByName") or {}).get("name")
        return ProjectItemInfo(
            item_id=str(node["id"]),
            project_id=(node.get("project") or {}).get("id"),
            repo=repo if isinstance(repo, str) else None,
            number=number if isinstance(number, int) and isinstance(repo, str) else None,
            status=status if isinstance(status, str) else None,
        )

    async def graphql(
        self, query: str, variables: Json, installation_id: int, what: str
    ) -> GraphQLAnswer:
        """One GraphQL request as an installation; `what` names it in error messages."""
        response = await self.request(
            "POST",
            graphql_url(self.api_url),
            installation_id=installation_id,
            json={"query": query, "variables": variables},
        )
        try:
            body = response.json()
        except ValueError:
            raise TransientError(
                f"GitHub GraphQL answered {what} with a body that is not JSON"
            ) from None
        if not isinstance(body, dict):
            raise TransientError(f"GitHub GraphQL answered {what} with no JSON object")
        errors = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        forbidden = [e for e in errors if _forbidden(e)]
        others = [e for e in errors if not _forbidden(e)]
        if any(e.get("type") == "RATE_LIMITED" for e in others):
            raise RateLimited(_reset(response), f"GitHub GraphQL rate limit: {_messages(others)}")
        if any(e.get("type") == "NOT_FOUND" for e in others):
            raise RequestRejected(404, f"GitHub GraphQL, {what}: {_messages(others)}")
        if others:
            raise TransientError(f"GitHub GraphQL, {what}: {_messages(others)}")
        data = body.get("data")
        if not isinstance(data, dict):
            if forbidden:
                return GraphQLAnswer({}, forbidden)
            raise TransientError(f"GitHub GraphQL answered {what} without data")
        return GraphQLAnswer(data, forbidden)


def _forbidden(error: Json) -> bool:
    message = str(error.get("message") or "")
    return error.get("type") in ("FORBIDDEN", "INSUFFICIENT_SCOPES") or (
        "not accessible by integration" in message
    )


def _messages(errors: list[Json]) -> str:
    said = dict.fromkeys(str(e.get("message") or e.get("type") or "error") for e in errors)
    return "; ".join(list(said)[:3])[:500]


def _reset(response: httpx.Response) -> datetime:
    raw = response.headers.get("x-ratelimit-reset", "")
    if raw.isdigit():
        return datetime.fromtimestamp(int(raw), UTC)
    return datetime.now(UTC) + RATE_LIMIT_WAIT
