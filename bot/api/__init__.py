"""The JSON API, health, metrics and the home page."""
