"""Reliability runs: a bounded load generator (``load``), throwaway servers (``harness``), the record
the reliability tests write (``record``) and ``docs/RELIABILITY.md`` built from it (``report``).

``make soak`` runs ``python -m reliability.load``; ``make reliability`` runs ``python -m reliability.report``.
"""
