"""fetchd's own POP3 client.

``core`` is the sans-IO protocol (no sockets); ``transport`` moves bytes;
``client.Session`` drives the core over a transport; ``auth`` holds the login
methods. ``connect.open_session`` puts them together for one account.
"""
