"""Evaluation: retrieval metrics per language and Matryoshka dim, and the HTML/Markdown reports
people read (evaluation and validation pages)."""
