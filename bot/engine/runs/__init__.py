"""Runs: dispatch, claims, the choice of machine, the run spec and following runs."""
