"""Written requests (issue #11): the rules of tickets, pure like ivr/ (no I/O library).

states.py: a ticket's states and steps, and its append-only history; sla.py: deadlines on the
business calendar (ivr.hours), paused while waiting for the citizen; numbers.py: the numbers
citizens quote. The web form, the store and the console live in centralino/.
"""
