"""Sharing: other registries, read and written."""
