"""fetchd: an unattended POP3 mail-fetching daemon.

Flow: config -> scheduler -> per-account poll -> POP3 session -> store -> state.
"""

__version__ = "0.1.0"
