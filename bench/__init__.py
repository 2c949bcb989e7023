"""Benchmarks and load generators for ticker: development tooling, never part of the product.

Installed only when ``DJANGO_DEBUG=1`` (config/settings.py) and left out of the
Docker image (.dockerignore). It may import from ``ticker``; ``ticker`` never
imports from here.
"""
