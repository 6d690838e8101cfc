"""Measurement maths: one module per register or spec (bytes or digests in, prediction with events
and assumptions out). Imports only :mod:`image_builder.formats` readers below it (docs/architecture.md)."""
