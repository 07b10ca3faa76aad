"""spmd-infer: torchrun-native SPMD offline batch inference for Hugging Face LLMs."""

__version__ = "0.1.0"
