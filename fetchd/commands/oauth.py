"""``fetchd oauth login ACCOUNT``: the one step of OAuth2 that needs a person.

It runs the device flow of the account's ``oauth2`` table: fetchd prints an
address and a code, the person enters the code in any browser and approves,
and fetchd stores the grant privately. Every later login renews the access
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
    oauth.login(account.name, account.oauth2, say)
    say(f"logged in: account {account.name} renews its access token by itself from now on")
    say(f"the grant is kept in {account.oauth2.token_file} (readable by this user only)")
    say("a running daemon polls the account at once when reloaded: systemctl reload fetchd")
    return 0
