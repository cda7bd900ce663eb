"""study: when do relaxed TLB flushes beat strict TLB shootdowns, by how much, and where do they lose?"""

__version__ = "0.1.0"
