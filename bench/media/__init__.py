"""Media pipeline benchmark: pyvips (the server's pipeline) against the same steps in Pillow."""
