"""smc: one executable that makes any Docker image a SageMaker container."""

__version__ = "0.1.0"
