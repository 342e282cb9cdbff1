"""``parley loadtest``: concurrent sessions against a Parley URL, and the report they make.

``client.loadtest.cli`` is the command, ``generator`` the per-process sessions
(``sockets`` their minimal Socket.IO clients), ``prepare`` the sign-ins and
groups before the clock starts, ``pool`` the processes, ``report`` the numbers.
``bench/fanout`` drives the same generator.
"""
