"""Beam data: the machine library, depth-dose tables and their analysis, applicators."""
