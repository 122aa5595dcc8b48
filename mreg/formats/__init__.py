"""Weight formats: the files mreg reads without torch and never runs.

safetensors and zip containers, the restricted pickle machine for ``.pt`` files,
what weight files hold (tensor facts) and where to cut them so that tensors are
stored apart, MONAI bundles. Storage never parses a format: the caller passes the
cut points down.

May import: :mod:`mreg.records` and below, and the standard library.
"""
