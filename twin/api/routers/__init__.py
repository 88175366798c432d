"""API routers, one per concern."""
