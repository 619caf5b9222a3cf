"""smc doctor."""
