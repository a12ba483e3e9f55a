"""Spillgate: an LLM API gateway that keeps coding agents working through capacity failures."""

__version__ = "0.1.0"
