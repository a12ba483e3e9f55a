"""The request pipeline: authenticate, parse, route, forward, relay."""
