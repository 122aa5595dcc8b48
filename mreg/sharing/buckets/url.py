"""Bucket URLs and the settings that go with them (no network, no obstore)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

from mreg.errors import InvalidInputError
from mreg.text import printable

if TYPE_CHECKING:
    from mreg.storage.config import Config

SCHEMES = {"s3": "S3 (or S3-compatible)", "gs": "Google Cloud Storage", "az": "Azure Blob Storage"}
_URL = re.compile(r"(s3|gs|az)://([^/?#]*)(/[^?#]*)?", re.ASCII)
_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{0,254}", re.ASCII)
_SEGMENT = re.compile(r"[A-Za-z0-9_.+=@-]+", re.ASCII)
SETTING_KEYS = ("endpoint", "region", "allow-http")
"""Per-remote keys a bucket reads from ``.mreg/config`` (``remote.NAME.endpoint`` ...)."""


class BucketURL(NamedTuple):
    """``scheme://bucket/prefix``: where a registry lives in object storage."""

    scheme: str  # s3, gs or az
    bucket: str  # the bucket (Azure: the container)
    prefix: str  # "" or "a/b", without slashes at either end

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")


def is_bucket_url(text: str) -> bool:
    """True for ``s3://``, ``gs://`` and ``az://`` URLs (well-formed or not)."""
    return re.match(r"(s3|gs|az)://", text, re.ASCII) is not None


def parse_bucket_url(text: str) -> BucketURL:
    """Parse and validate a bucket URL.

    Raises:
        InvalidInputError: not ``s3://BUCKET[/PREFIX]`` (or gs://, az://), or a prefix
            with empty, ``.`` or ``..`` segments or unusual characters.
    """
    match = _URL.fullmatch(text)
    if match is None or not _BUCKET.fullmatch(match[2]):
        raise InvalidInputError(
            f"invalid bucket URL '{printable(text)}': expected s3://BUCKET/PREFIX, gs://BUCKET/PREFIX "
            "or az://CONTAINER/PREFIX (bucket names are lower-case letters, digits, '.', '-' and '_')"
        )
    segments = [s for s in (match[3] or "").split("/") if s]
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.fullmatch(segment):
            raise InvalidInputError(f"invalid bucket URL '{printable(text)}': bad prefix segment '{printable(segment)}'")
    return BucketURL(match[1], match[2], "/".join(segments))


def remote_settings(config: Config | None, url: BucketURL) -> dict[str, str]:
    """``endpoint``, ``region``, ``allow-http`` of the configured remotes whose URL is ``url``.

    Secrets are never read from the config (``mreg config`` refuses to write them):
    they come from each provider's environment variables and files.
    """
    settings: dict[str, str] = {}
    if config is None:
        return settings
    for name in config.subsections("remote"):
        configured = config.get(f"remote.{name}.url")
        if configured is None or not is_bucket_url(configured):
            continue
        try:
            same = parse_bucket_url(configured) == url
        except InvalidInputError:
            continue
        if same:
            for key in SETTING_KEYS:
                value = config.get(f"remote.{name}.{key}")
                if value is not None:
                    settings[key] = value
    return settings
