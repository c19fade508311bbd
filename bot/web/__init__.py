"""The web page (DESIGN §5, issue #7): server-rendered harness, skill, ticket and run pages.

Jinja2 with autoescaping, no front-end build step; everything works without JavaScript but
the live updates. Reads are public or need a session (`OPENASE_WEB_READS`); writes need a
session and a CSRF token on every form.
"""
