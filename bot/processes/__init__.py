"""Composition roots: the web app, the control worker, `up`, the CLI, migrations and `try`;
the only place that wires jobs, crons, performers and command handlers together."""
