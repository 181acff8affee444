"""spfpolicy: an SPF (RFC 7208) policy daemon for Postfix."""

__version__ = "0.1.0"
