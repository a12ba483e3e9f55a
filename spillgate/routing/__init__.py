"""Routing: pure decisions about which route and account serve a request."""
