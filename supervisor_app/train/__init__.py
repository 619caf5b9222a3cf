"""smc train."""
