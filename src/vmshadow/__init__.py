"""vmshadow: right-size virtual machines before they launch."""

__version__ = "0.1.0"
