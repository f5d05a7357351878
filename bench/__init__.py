"""The fetchd benchmark: fetchd against mpop, fetchmail and getmail6 on a private Dovecot.

Flow: ``run.py`` (arguments) -> ``profiles`` (what to measure) -> ``corpus``
(a deterministic mailbox, delivered into Dovecot) -> ``clients`` (one
configuration per client) -> ``measure`` (wall, CPU and peak RSS of the child)
-> ``verify`` (what the client stored equals what was delivered) -> ``report``
(Markdown tables and JSON). ``wire.py`` is the pipelined raw-socket client that
sets the wire limit.
"""
