"""Configuration, torch-free: the registry, training and regime settings, cells and their identity, grid expansion, the search space and the recipe checks."""
