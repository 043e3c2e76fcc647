"""How the mailbox reader reads a batched UID FETCH answer (aioimaplib's lines: text lines,
and each message's bytes as a bytearray), whatever order the server puts UID and body in."""

from centralino.mail.inbox import _bodies, _chunks, _uid_set


def test_bodies_by_uid_whether_the_uid_comes_before_or_after_them():
    dovecot = [b"1 FETCH (UID 7 BODY[] {5}", bytearray(b"uno\r\n"), b")",
               b"2 FETCH (UID 9 BODY[] {4}", bytearray(b"due\n"), b")", b"Fetch completed."]
    assert _bodies(dovecot) == {7: b"uno\r\n", 9: b"due\n"}
    after = [b"1 FETCH (BODY[] {3}", bytearray(b"tre"), b" UID 12)",
             b"2 FETCH (BODY[] {7}", bytearray(b"quattro"), b" UID 13 FLAGS (\\Seen))",
             b"Fetch completed."]
    assert _bodies(after) == {12: b"tre", 13: b"quattro"}
    assert _bodies([b"Fetch completed."]) == {}  # all gone meanwhile


def test_uids_go_in_batches():
    assert _chunks(list(range(1, 8)), 3) == [[1, 2, 3], [4, 5, 6], [7]]
    assert _uid_set([3, 5, 9]) == "3,5,9"
