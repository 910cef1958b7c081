"""The library's version, stated once for every package (records, reports, exhibits name it)."""

__version__ = "0.1.0"
