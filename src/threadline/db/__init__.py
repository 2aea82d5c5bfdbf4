"""Postgres repositories; SQL kept beside each one."""
