"""Pure measurement maths: one module per register or spec (bytes in, prediction out)."""
