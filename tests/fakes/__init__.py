"""Stand-ins for outside services, for tests that must not touch the network."""
