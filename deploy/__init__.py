"""Deployment layouts built from the project's archives (KServe)."""
