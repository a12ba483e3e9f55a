"""Shared runtime state: account health, in-flight counts, session bindings."""
