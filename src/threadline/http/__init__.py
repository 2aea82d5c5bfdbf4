"""Litestar controllers, wire schemas and the error table."""
