"""Metatune's search service: search definition, Tuner, head-node storage, reports and the CLI."""
