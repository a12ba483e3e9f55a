"""The operator's side of the gateway: the admin JSON API and the dashboard page."""
