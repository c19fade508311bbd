"""Where PostgreSQL and Redis are: the configured URLs, or real servers embedded in the data
dir (for `openase up`, the CLI borrowing a running `up`'s, and the test suite)."""
