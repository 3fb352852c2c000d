"""servermode benchmarks: scripts that measure a figure against a baseline in the same run.

Run them all with ``make bench``, or one with ``python -m bench.<script>`` from the repository
root; ``--quick`` runs a tiny count (the smoke test uses it), ``--json PATH`` keeps the results.
"""
