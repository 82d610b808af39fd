"""Training: the demo world's tokenizer and tiny base model recipes, probing, scoring, masks, the
masked LoRA and the unlearning recipe. Needs the `[train]` extra (torch, transformers, peft)."""
