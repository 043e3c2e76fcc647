"""E-mail to the help desk (issue #12), the rules: what a message is (a request, a reply, an
automatic answer, a bounce, a PEC receipt), which ticket it belongs to, what may be answered.
Pure: the standard library's email package reads the bytes; no socket, no file."""
