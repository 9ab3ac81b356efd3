"""Helpers for the smol preference alignment course: data formatting, evaluation, plotting and the offline world."""

__version__ = "0.1.0"
