"""``fetchd oauth login ACCOUNT``: the one step of OAuth2 that needs a person.

With the device flow (``--device``, the default but for Google) fetchd
prints an address and a code, and the person enters the code in any browser
and approves. With ``--browser`` (the default for Google, whose device flow
does not grant the Gmail scope) the person opens the printed address in a
browser on this machine, which comes back to fetchd on a loopback port.
Either way fetchd then stores the grant privately. Every later login renews the access
token by itself; this command is needed again only when the grant is revoked
or expires (fetchd's error then says so).
"""

from __future__ import annotations

import argparse

from fetchd import oauth
from fetchd.commands import load, say, select_accounts
from fetchd.errors import UsageError


def run(args: argparse.Namespace) -> int:
    config = load(args)
    (account,) = select_accounts(config, [args.account])
    if account.oauth2 is None:
        raise UsageError(
            f"account {account.name} has no [accounts.{account.name}.oauth2] table; "
            "add one to log in with OAuth2 (see `fetchd init --example`)"
        )
    flow = args.flow or ("browser" if account.oauth2.provider == "google" else "device")
    oauth.login(account.name, account.oauth2, say, browser=flow == "browser")
    say(f"logged in: account {account.name} renews its access token by itself from now on")
    say(f"the grant is kept in {account.oauth2.token_file} (readable by this user only)")
    say("a running daemon polls the account at once when reloaded: systemctl reload fetchd")
    return 0
