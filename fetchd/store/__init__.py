"""Where fetched mail goes, durably: one account's place on disk and the state.

- ``account``: ``AccountStore``, one account's Maildir, attachment folders and
  state rows; it owns "commit a message" (deliver, record, index).
- ``maildir``: Maildir delivery (``tmp/`` then ``new/``, keyed file names).
- ``durable``: flushing files and directories, in batches.
- ``state``: the SQLite state: what was fetched, polls, the ``fetchd list`` index.
"""
