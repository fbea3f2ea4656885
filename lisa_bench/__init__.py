"""lisa-bench: reproduce and benchmark LISA against memory-efficient fine-tuning baselines."""

__version__ = "0.1.0"

import logging as _logging

# bitsandbytes (pulled in by galore-torch) warns at import about optional CPU kernels we never use
_logging.getLogger("bitsandbytes").setLevel(_logging.ERROR)
