"""Registries in object storage: ``s3://``, ``gs://`` and ``az://`` URLs.

A bucket holds a registry key for key as a directory does (``objects/ab/…``,
``models/<name>/_refs``), with the file system's locks replaced by the service's
conditional writes: objects are created only if absent (``If-None-Match: *``), ref
tables change by compare-and-swap on their ETag (``If-Match``), and a model's log is
one object per change, so concurrent writers never lose an entry.

:mod:`.url` parses URLs and settings without importing obstore; :mod:`.client`
(obstore), :mod:`.source` (pull, clone, fallbacks), :mod:`.destination` (push) and
:mod:`.sweep` (gc) are imported only by commands that touch a bucket.
"""

from mreg.sharing.buckets.url import BucketURL, is_bucket_url, parse_bucket_url

__all__ = ["BucketURL", "is_bucket_url", "parse_bucket_url"]
