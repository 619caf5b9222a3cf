"""The Docker labels by which an image tells SageMaker what it supports (value `true`)."""

BIND_TO_PORT_LABEL = "com.amazonaws.sagemaker.capabilities.accept-bind-to-port"
MULTI_MODEL_LABEL = "com.amazonaws.sagemaker.capabilities.multi-models"
