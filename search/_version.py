"""The version of actreg, in one place (the package face, the CLI and the cluster check read it)."""

__version__ = "0.1.0"
