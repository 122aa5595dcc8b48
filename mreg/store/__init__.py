"""The open registry (:class:`~mreg.store.store.Store`): its parts, and what needs several of them.

Locks, resolving references (here, then in the fallbacks), reading manifests and
fetching what only a fallback has. Every operation takes a Store.

May import: :mod:`mreg.sharing`, :mod:`mreg.storage`, :mod:`mreg.records` and below.
"""
