"""The open registry."""
