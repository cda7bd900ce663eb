"""The results format, owned here: what a cell result and a sweep's tables hold, and their units.

``metrics``: the registry of metrics and counters, each with its unit and words.  ``tables``: the
one writer and reader of a sweep's table set (cells, replicates, calls, manifest), used by the
sweep, ``measure`` and the test fixtures.  ``files``: whole-set, one-writer output directories.
Nothing here imports the runner, the analysis or the report.
"""
