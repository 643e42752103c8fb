"""Sequence models that map features [B, T, 6516] to CTC logits [B, T', C]."""
