"""Threadline's benchmark: a fake upstream, a load generator and the runner behind `make bench`."""
