"""Adapters that put turnstate into other bot frameworks. Each loads its framework only when imported."""
