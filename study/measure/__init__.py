"""Ground truth: the engine's workloads measured on the running kernel.

``host`` reads the host's facts (topology, PTI, virtualization, APIC, load), ``build``
compiles the shipped C benchmark (bench.c) with the system's compiler, ``grid`` expands a
conf/measure/*.yaml grid into host cells, ``run`` runs them into CellResults, ``machine``
maps host facts to the engine's Machine.  Beside the engine: it imports the engine and
workloads only; the command (study/cli/measure.py) writes the tables with the results'
table writer (study/results/tables.py), as the sweep does.
"""
