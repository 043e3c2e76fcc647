"""E-mail in the shell (issue #12): the mailboxes read over IMAP, and what they bring
turned into tickets."""
