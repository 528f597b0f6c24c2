"""Read models built from the event stream, and the workers that keep them up to date."""
