"""Learning-block containers: building and running them, packaging a block, scaffolding a plugin."""
