"""Bridges between fmflow and other frameworks; each imports its framework only when used."""
