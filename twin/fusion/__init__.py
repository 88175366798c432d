"""Fusion: combine sources into the city model, every fused value with its provenance."""
