# Adds 2^64 - 8 to the context pointer so it wraps to 8 bytes below the context. (With every access "proven": 8 bytes of its own domain, read as zero.)
# expect: OutOfBounds at 3
# expect-if-proven: ok 0
lddw %r3, 0xfffffffffffffff8
add %r1, %r3
ldxdw %r0, [%r1]
exit
