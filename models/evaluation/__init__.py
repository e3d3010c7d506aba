"""Evaluating a dose: dose-volume histograms and their metrics."""
