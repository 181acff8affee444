"""`spfpolicy lint`: an administrator's own SPF records checked before they are published.

Imported by cli alone, which adds the command (spfpolicy.lint.command).
"""
