"""smc serve."""
