"""Corpora, vocabulary, datasets and the LightningDataModule."""
