"""`openase harness|skill`: the harness store's command line, a client of the API."""
