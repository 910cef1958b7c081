"""evidence-chain: preserve online evidence so that it holds up in court.

The shared core: canonical JSON, keys, records, exhibits, the artifact store,
settings and errors. The ledger, capture and verification live in the
``ledger``, ``capture`` and ``verify`` packages.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
