"""Reading a stored message: the streaming MIME walker and attachment extraction.

Nothing here touches the network or the state; it reads ``.eml`` files that
are already safe on disk.

- ``walker``: the streaming walker, events per part (``parts``), one reader per
  frame kind (``frames``), line reading (``lines``) and header parsing
  (``headers``); ``decoders`` for base64, quoted-printable and uuencode.
- ``attachments``: ``extract``, one message's attachments into a folder, with
  ``extraction`` (the job in progress), ``folders`` (a hidden partial folder
  renamed into place; finding the folder made earlier), ``selection`` (what
  counts as an attachment), ``names`` (safe file names) and ``tnef``
  (winmail.dat).
- ``message_info``: date, sender and subject for ``fetchd list``.
"""
