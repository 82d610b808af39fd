"""Activation-guided masked LoRA unlearning: probe, score, mask, train, save."""
