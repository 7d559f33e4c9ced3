"""Adapters: the only modules that import third-party backend clients."""
