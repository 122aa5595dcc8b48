"""Operations: what each command does, as functions over a :class:`~mreg.store.store.Store`.

Registering, listing and querying, tags, notes, export, diff, disk usage, fsck and
gc, push, pull and clone. An operation never calls the facade back.

May import: :mod:`mreg.store` and everything below it; never :mod:`mreg.registry`
or a front end.
"""
