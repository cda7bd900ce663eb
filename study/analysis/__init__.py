"""Analysis of a sweep: per-cell summaries, paired strict-vs-relaxed comparisons, the
crossover where relaxed stops winning, per-idea attribution, the seed table, the plots.

It reads only the sweep's tables (``outputs/sweep/<name>/``) and writes plain files
(CSV, JSON, SVG) under ``outputs/analysis/`` plus ``outputs/metrics.json``; the report
layer reads those files and nothing else.  Layers below it: workloads -> runner.
"""
