"""The engine: a vectorized numpy model of the x86 TLB machinery (no I/O, no Hydra).

Layers above it: workloads and policies -> runner -> analysis -> report.
"""
