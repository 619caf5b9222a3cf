"""Multi-model endpoints (SAGEMAKER_MULTI_MODEL=true): the /models API of `smc serve`."""
