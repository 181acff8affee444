"""check_host() for one identity: pyspf over our resolver, with the result and include caches.

The only layer that imports pyspf.
"""
