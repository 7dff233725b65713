# Reads 8 bytes starting 4 bytes before the end of the context (r1 + r2 - 4). (With every access "proven": its own input and the zeroed rest of its context area.)
# expect: OutOfBounds at 3
# expect-if-proven: ok 286331153
add %r1, %r2
sub %r1, 4
mov %r0, 0
ldxdw %r0, [%r1]
exit
