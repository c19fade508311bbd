"""Every GraphQL document the Linear client sends, by operation name (the tests validate each
one against Linear's published schema).
"""

from __future__ import annotations

from textwrap import dedent

_ISSUE_FIELDS = """
fragment IssueFields on Issue {
  id
  identifier
  number
  title
  description
  url
  createdAt
  updatedAt
  completedAt
  canceledAt
  state { id name type }
  team { id key name }
  # 50 labels keeps a 50-issue page well inside Linear's query complexity limit.
  labels(first: 50) { nodes { id name } }
  assignee { id name email }
  creator { id name email }
  project { id name }
}
"""


def _document(text: str, *fragments: str) -> str:
    return dedent(text).strip() + "".join("\n" + dedent(f).strip() for f in fragments)


DOCUMENTS: dict[str, str] = {
    "Viewer": _document("""
        query Viewer {
          viewer { id }
        }
    """),
    # 250 is Linear's page maximum; a team has a handful of workflow states.
    "TeamStates": _document("""
        query TeamStates($teamId: String!) {
          team(id: $teamId) {
            states(first: 250) { nodes { id name type } }
          }
        }
    """),
    # Team labels and workspace labels (no team) both apply to the team's issues; group
    # labels only hold other labels and cannot be put on an issue.
    "TeamLabels": _document("""
        query TeamLabels($teamId: ID!, $after: String) {
          issueLabels(
            first: 250
            after: $after
            filter: {
              isGroup: { eq: false }
              or: [{ team: { id: { eq: $teamId } } }, { team: { null: true } }]
            }
          ) {
            nodes { id name }
            pageInfo { hasNextPage endCursor }
          }
        }
    """),
    "CreateLabel": _document("""
        mutation CreateLabel($teamId: String!, $name: String!, $color: String) {
          issueLabelCreate(input: { teamId: $teamId, name: $name, color: $color }) {
            success
            issueLabel { id name }
          }
        }
    """),
    "Issue": _document(
        """
        query Issue($id: String!) {
          issue(id: $id) { ...IssueFields }
        }
        """,
        _ISSUE_FIELDS,
    ),
    "IssuesPage": _document(
        """
        query IssuesPage($teamKey: String!, $first: Int!, $after: String) {
          issues(
            filter: { team: { key: { eq: $teamKey } } }
            first: $first
            after: $after
            orderBy: updatedAt
          ) {
            nodes { ...IssueFields }
            pageInfo { hasNextPage endCursor }
          }
        }
        """,
        _ISSUE_FIELDS,
    ),
    # Backward (Relay `last`/`before`) through the newest-first order: the least recently
    # updated page comes first, so a reader that stops part way has read everything older.
    "IssuesChangedSince": _document(
        """
        query IssuesChangedSince(
          $teamKey: String!
          $since: DateTimeOrDuration!
          $last: Int!
          $before: String
        ) {
          issues(
            filter: { team: { key: { eq: $teamKey } }, updatedAt: { gte: $since } }
            last: $last
            before: $before
            orderBy: updatedAt
          ) {
            nodes { ...IssueFields }
            pageInfo { hasPreviousPage startCursor }
          }
        }
        """,
        _ISSUE_FIELDS,
    ),
    "MoveIssue": _document("""
        mutation MoveIssue($id: String!, $stateId: String!) {
          issueUpdate(id: $id, input: { stateId: $stateId }) { success }
        }
    """),
    "AddLabel": _document("""
        mutation AddLabel($id: String!, $labelId: String!) {
          issueAddLabel(id: $id, labelId: $labelId) { success }
        }
    """),
    "RemoveLabel": _document("""
        mutation RemoveLabel($id: String!, $labelId: String!) {
          issueRemoveLabel(id: $id, labelId: $labelId) { success }
        }
    """),
    "CreateComment": _document("""
        mutation CreateComment($issueId: String!, $body: String!) {
          commentCreate(input: { issueId: $issueId, body: $body }) {
            success
            comment { id url }
          }
        }
    """),
    "UpdateComment": _document("""
        mutation UpdateComment($id: String!, $body: String!) {
          commentUpdate(id: $id, input: { body: $body }) {
            success
            comment { id url }
          }
        }
    """),
    "React": _document("""
        mutation React($commentId: String!, $emoji: String!) {
          reactionCreate(input: { commentId: $commentId, emoji: $emoji }) {
            success
            reaction { id }
          }
        }
    """),
    "AttachUrl": _document("""
        mutation AttachUrl($issueId: String!, $url: String!, $title: String!) {
          attachmentLinkURL(issueId: $issueId, url: $url, title: $title) {
            success
            attachment { id }
          }
        }
    """),
    # A team by its key (ENG): what an issue is created in.
    "TeamByKey": _document("""
        query TeamByKey($key: String!) {
          teams(filter: { key: { eq: $key } }, first: 1) {
            nodes { id key name }
          }
        }
    """),
    # `id` is ours (UUID v4 format, as IssueCreateInput allows): a retry after a lost answer
    # asks for the issue by that id instead of creating a second one.
    "CreateIssue": _document(
        """
        mutation CreateIssue(
          $id: String!
          $teamId: String!
          $title: String!
          $description: String
          $labelIds: [String!]
        ) {
          issueCreate(
            input: {
              id: $id
              teamId: $teamId
              title: $title
              description: $description
              labelIds: $labelIds
            }
          ) {
            success
            issue { ...IssueFields }
          }
        }
        """,
        _ISSUE_FIELDS,
    ),
}
