"""The national population register: its extract format and a synthetic generator."""
