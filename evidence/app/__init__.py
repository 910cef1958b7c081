"""The application layer: what a face (the web app, the CLI, another tool) asks of a home.

Each function takes an open ``ledger.log.Ledger`` (or a case file path) and
returns plain dataclasses; progress goes to an optional callback. Nothing
here prints, parses flags or renders HTML: ``evidence serve`` and the
``evidence`` command call these and only present the result.

One module per kind of work, imported on its own, so that a face pays only
for what it uses (``evidence verify`` must not load the database layer or
the browser): ``cases`` (reading cases and exhibits), ``acts`` (capture,
attest, extraction record, export), ``checks`` (offline verification).

    from evidence.app import cases
    with Ledger.open(home) as led:
        summaries = cases.list_cases(led)
"""
