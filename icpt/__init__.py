"""ICPT, the application around the model (`modeling_icpt`, `processing_icpt`): docs/architecture.md maps it."""
