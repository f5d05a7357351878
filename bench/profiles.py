"""The benchmark's profiles: which mailbox, over which transport, measuring what.

``FULL`` is the benchmark proper; ``SMOKE`` has the same profiles at tiny
sizes, so that the test suite can check that the whole harness works in
seconds (it checks that it works, not how fast anything is).
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.corpus import MailboxSpec

__all__ = ["FULL", "SMOKE", "Profile"]

_KIB = 1024
_MIB = 1024 * 1024


@dataclass(frozen=True)
class Profile:
    """One benchmark case.

    ``poll``: the clients first fetch the mailbox (untimed), then a second pass
    that finds nothing new is timed. ``tls``: implicit TLS (RFC 8314) instead
    of plain POP3. ``mailbox`` names whose generated messages are used, so that
    ``small-tls`` fetches exactly the ``small`` mailbox.
    """

    name: str
    spec: MailboxSpec
    description: str
    mailbox: str = ""
    tls: bool = False
    poll: bool = False
    #: Run only when named with ``--profile``: not part of the default run or of --smoke's.
    on_request: bool = False
    #: Only clients whose name starts with one of these (all when empty): the
    #: scaling profile leaves out the peers that fork per message.
    clients: tuple[str, ...] = ()

    @property
    def seed_name(self) -> str:
        return self.mailbox or self.name


def _profiles(
    *,
    small: int,
    small_large: int,
    mixed: int,
    large: tuple[int, int],
    huge: int,
    poll: int,
    poll_large: int,
) -> dict[str, Profile]:
    large_count, large_size = large
    profiles = [
        Profile("small", MailboxSpec("text", small, 4 * _KIB), f"{small} text messages of ~4 KB"),
        Profile(
            "small-20k",
            MailboxSpec("text", small_large, 4 * _KIB),
            f"{small_large} text messages of ~4 KB: the per-message cost against small's "
            f"{small} shows whether anything grows faster than the mailbox",
            clients=("fetchd", "mpop", "wire-limit"),
        ),
        Profile(
            "mixed",
            MailboxSpec("mixed", mixed),
            f"{mixed} messages, every fifth with 1-3 base64 attachments of 10 KB-2 MB "
            "(log-uniform sizes); fetchd also extracts the attachments, the peers only "
            "store the message",
        ),
        Profile(
            "large",
            MailboxSpec("attachment", large_count, large_size),
            f"{large_count} messages of {large_size // _MIB} MB, each one base64 attachment "
            "(extracted by fetchd)",
        ),
        Profile(
            "huge",
            MailboxSpec("attachment", 1, huge),
            f"one {huge // _MIB} MB message, a single base64 attachment (extracted by "
            "fetchd); peak memory matters here",
        ),
        Profile(
            "poll",
            MailboxSpec("text", poll, 4 * _KIB),
            f"{poll} text messages already fetched; only the second pass, which finds "
            "nothing new, is timed",
            poll=True,
        ),
        Profile(
            "poll-20k",
            MailboxSpec("text", poll_large, 4 * _KIB),
            f"{poll_large} text messages already fetched; only the second pass, which finds "
            "nothing new, is timed (on request: --profile poll-20k)",
            poll=True,
            on_request=True,
        ),
        Profile(
            "small-tls",
            MailboxSpec("text", small, 4 * _KIB),
            f"the small mailbox ({small} messages) over implicit TLS, CA-verified",
            mailbox="small",
            tls=True,
        ),
    ]
    return {profile.name: profile for profile in profiles}


FULL = _profiles(
    small=2000,
    small_large=20000,
    mixed=300,
    large=(5, 20 * _MIB),
    huge=200 * _MIB,
    poll=5000,
    poll_large=20000,
)
SMOKE = _profiles(
    small=20,
    small_large=200,
    mixed=5,
    large=(1, _MIB),
    huge=2 * _MIB,
    poll=50,
    poll_large=200,
)
