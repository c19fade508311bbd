"""Configuration: the control-plane YAML, a repository's `.github/openase.yml`, its loader and
problems, tracker routes, and the workflow states they speak of."""
