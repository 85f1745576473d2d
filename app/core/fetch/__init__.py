"""Obtaining a backend without building it: downloads, safe archives, signed catalogs, publishing."""
