"""Pipelines: parse a config once, at the edge, and wire components into a run.

Pipelines hold the CLI and do no ML themselves; every stage is a component call.
"""
