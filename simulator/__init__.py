"""Simulated RL training on synthetic prompts with latent pass rates (built on `cures.policies`)."""
