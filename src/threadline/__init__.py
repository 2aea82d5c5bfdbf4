"""Threadline: a streaming chat backend with persisted threads, resumable runs and memory."""

__version__ = "0.1.0"
