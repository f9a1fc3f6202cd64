"""Pages for department staff and process editors (the Chinese tasklist arrives with sign-in)."""
