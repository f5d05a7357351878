"""fetchd: an unattended POP3 mail-fetching daemon.

Flow: config -> scheduler -> per-account poll -> POP3 session -> store -> state.
"""

import os

__version__ = "0.1.0"

# fetchd uses no pydantic plugins; looking for them scans the metadata of every
# installed distribution when the first model is built, which costs tens of
# milliseconds at each start of a short-lived command.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
