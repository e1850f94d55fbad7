"""Jumpstarter driver for Renode virtual boards."""
