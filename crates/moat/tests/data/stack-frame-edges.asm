# The first and last bytes of the 512-byte frame are accessible and start zeroed.
# result: 0x1
stb [%r10-512], 1
ldxb %r0, [%r10-512]
ldxb %r1, [%r10-1]
add %r0, %r1
exit
