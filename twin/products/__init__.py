"""Thematic products and exports of the city model (formats, metadata, filters)."""
