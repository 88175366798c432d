"""Data security: principals (users and service accounts) with roles, clearance and area; API keys and tokens;
the guard every reader of the store goes through; the hash-chained audit log."""
