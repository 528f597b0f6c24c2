"""The benchmark harness behind `vaxreg bench`."""
