"""twin: an urban spatiotemporal digital-twin backend."""

__version__ = "0.1.0"
