"""Reporting: tables (CSV, Markdown, LaTeX) and figures (PNG, PDF) of a study, and the weight-norm analysis."""
