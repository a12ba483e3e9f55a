"""Prices and what tokens cost (``genai-prices`` data, operator overrides)."""
