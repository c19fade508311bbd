"""The outbox and its effect kinds; performers that write to GitHub, Linear and Jira through
the adapters' typed clients."""
