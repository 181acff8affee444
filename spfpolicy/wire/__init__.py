"""The Postfix side: the policy protocol, the event loop, listeners, workers and the server.

It sees two callables (begin a request, complete it), never pyspf, DNS or the policy.
"""
