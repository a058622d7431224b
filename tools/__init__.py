"""Development tools for the project itself (not part of what it serves or ships)."""
