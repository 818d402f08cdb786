"""Pipelines: read inputs, run stages, write outputs and metadata. One function per CLI command."""
