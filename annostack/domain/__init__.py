"""Domain models and pure logic; no I/O."""
