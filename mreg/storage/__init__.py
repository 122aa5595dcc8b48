"""Storage: the ``.mreg`` directory as bytes, digests and refs."""
