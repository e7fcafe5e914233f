"""Slow, obviously correct reference models the fast code is checked against."""
