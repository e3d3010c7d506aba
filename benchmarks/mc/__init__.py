"""Monte Carlo (ompmc) scripts: heterogeneity references and source-model commissioning."""
