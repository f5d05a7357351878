"""fetchd's own POP3 client; it imports nothing of fetchd but ``fetchd.errors``.

- ``core``: the sans-IO protocol (bytes in, events out, no sockets), with its
  states and legal commands in one table (``states``), the command lines
  (``commands``), the events (``events``) and the reply parsers (``replies``).
- ``transport``: sockets, TLS and timeouts; ``client``: ``Session`` drives the
  core over a transport, every reply bounded in octets and time.
- ``auth``: the login methods; ``connect.open_session`` puts it together.
- ``inventory``: what the mailbox holds this session, and which of it is new.
"""
