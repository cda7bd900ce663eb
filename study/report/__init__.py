"""The report: one document model built from the analysis files, rendered twice.

``content`` turns ``outputs/analysis/`` into a list of blocks (headings, paragraphs,
tables, figures); ``html`` renders them into one self-contained HTML file and ``pdf``
into a PDF through the typst compiler that the ``typst`` package bundles.  Building the
content once keeps the two outputs saying the same thing.
"""
