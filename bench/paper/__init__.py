"""The paper's theory: information-theoretic bounds and the binary Gaussian model with its exact quantities."""
