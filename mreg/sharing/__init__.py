"""Sharing: other registries, read and written.

Sources (a directory, a static HTTP server, a bucket) read with every byte bounded
and verified, fetching objects from them, fallback stores, the steps of a
transfer (push, pull and clone) and how notes travel with it, and registries in
object storage (:mod:`.buckets`).

May import: :mod:`mreg.storage`, :mod:`mreg.records` and below; obstore only in
:mod:`.buckets`, and only where a bucket is used.
"""
