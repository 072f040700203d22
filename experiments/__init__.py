"""actlab experiments: models, data, the shared trainer and the Hydra entry point."""
