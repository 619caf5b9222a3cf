"""Engine mode of `smc serve`: the user's own model server behind smc's nginx, supervised by smc."""
