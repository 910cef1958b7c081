"""evidence-chain: preserve online evidence so that it holds up in court.

The top floor: the application layer (``evidence.app``), the ``evidence``
command, the web app, case-file export and the extraction record. The core
everything builds on (errors, canonical JSON, keys, records, exhibits, the
artifact store, settings) is in ``ledger``; capture and verification are in
``capture`` and ``verify``.
"""

from ledger.version import __version__

__all__ = ["__version__"]
