"""Translation between the wire APIs through one canonical representation (``canonical.py``)."""
