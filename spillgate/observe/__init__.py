"""Observability: typed events about attempts and requests, delivered to observers."""
