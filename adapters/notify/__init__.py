"""Sending notifications: a Slack incoming webhook, a signed generic webhook, SMTP mail.

Each sender raises the adapters' errors (adapters/errors.py) so the outbox retries what is
transient and gives up on what is not. None ever puts a URL, secret or password in a
message: a Slack incoming-webhook URL is itself a credential.
"""
