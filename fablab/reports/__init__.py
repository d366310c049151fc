"""Utilisation reports for programme officers (a later issue)."""
