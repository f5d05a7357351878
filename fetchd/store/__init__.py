"""Where fetched mail goes: Maildir files, extracted attachments, fetch state."""
