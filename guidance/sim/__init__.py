"""Simulation with known truth: the simulated camera, the scripted procedure, the simulated frame
source."""
