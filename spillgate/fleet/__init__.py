"""Routing state shared by every worker and instance through Redis (``state: redis://…``)."""
