"""Thin, honest layers over PyAV: probe, decode, encode, and the output timeline."""
