"""Sidecar programs from supervisord-style files (SMC_PROGRAMS), for `smc serve` and `smc train`."""
