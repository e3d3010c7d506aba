"""Assembled programs: the demo on the built-in phantom."""
