"""Memory: the meter (CUDA allocator, CPU resident set), exact accounting from tensors, the analytic
model of a training step, and ``lisa-bench memory`` / ``memory-collect``."""
