"""The version of mreg (a module of its own: the parts that send it need not import the package)."""

__version__ = "0.1.0"
