"""Records: what mreg writes down and hands back, with their codecs. No I/O.

Names and versions (the grammar users type), manifests, notes, ref tables and
logs, model cards, and the values the API returns (views, diffs, reports), each
with its canonical encoding and its validation. The bounds on what is read whole
live in :mod:`.limits`.

May import: :mod:`mreg.errors`, :mod:`mreg.text`, the standard library and msgpack.
"""
