"""Implementations of the ports: models, embedders and event logs."""
