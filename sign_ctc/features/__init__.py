"""Landmarks and the features derived from them."""
