"""DNS for SPF: answers and errors, the shared TTL-aware cache, the dnspython stub resolver.

The only layer that imports dnspython.
"""
