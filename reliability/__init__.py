"""Reliability runs: a bounded load generator (``load``), memory and registration helpers (``harness``), the record
the reliability tests write (``record``) and ``docs/RELIABILITY.md`` built from it (``report``).

``make soak`` runs ``python -m reliability.load``; ``make reliability`` runs ``python -m reliability.report``.
"""
