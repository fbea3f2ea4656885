"""MT-Bench single-answer grading, following FastChat's llm_judge protocol (re-implemented)."""
