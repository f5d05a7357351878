"""POP3 servers to test fetchd against, also used by ``fetchd demo`` and the benchmark.

- :mod:`fetchd.testing.server`: a scriptable, threaded POP3 server on loopback
  that can play old, odd or broken servers (faults, missing extensions, LAST).
- :mod:`fetchd.testing.dovecot`: a private Dovecot instance with its own
  config, ports and certificate; the system's Dovecot is never touched.
- :mod:`fetchd.testing.tlsfiles`: throwaway CAs and server certificates.

Nothing here is imported by the daemon itself.
"""
