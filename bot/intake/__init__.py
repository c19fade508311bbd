"""What comes in: webhooks (GitHub, Linear, Jira), ingest, the mirror, backfill."""
