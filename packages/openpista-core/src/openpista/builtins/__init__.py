"""Built-in plugins: core's own tools, providers and skill runner, registered like any other."""
