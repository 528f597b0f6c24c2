"""The `vaxreg` command line."""
