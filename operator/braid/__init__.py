"""braid: run many coding agents in parallel and braid their branches into one."""

__version__ = "0.1.0"
