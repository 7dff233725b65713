# Internet checksum (RFC 1071) of the input: 16-bit one's-complement sum of big-endian words.
# r1 = packet address, r2 = its length. Returns the checksum.
mov %r0, 0
loop:
jlt %r2, 2, tail
ldxh %r3, [%r1]
be16 %r3
add %r0, %r3
add %r1, 2
sub %r2, 2
ja loop
tail:
jeq %r2, 0, fold
ldxb %r3, [%r1]
lsh %r3, 8
add %r0, %r3
fold:
mov %r3, %r0
rsh %r3, 16
and %r0, 0xffff
add %r0, %r3
mov %r3, %r0
rsh %r3, 16
add %r0, %r3
xor %r0, 0xffff
and %r0, 0xffff
exit
