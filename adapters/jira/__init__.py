"""Jira Cloud (and Server/Data Center where the payloads agree): webhooks in, normalized
events out; the REST client comes with the rest of the Jira support."""
