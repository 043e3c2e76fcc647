"""Written requests in the shell (issue #11): the desk that opens tickets and takes them
through their steps, the citizens' pages, the portal and console APIs."""
