"""lisa-bench: reproduce and benchmark LISA against memory-efficient fine-tuning baselines."""

__version__ = "0.1.0"
