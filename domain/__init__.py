"""The vaxreg domain: identities, areas, vaccines, and the aggregates that record them."""
