# rule: an unprivileged program may not read stack bytes it never wrote.
# context: buffer 8
# unprivileged
# reject: UninitStack at 0
ldxdw %r0, [%r10-8]
exit
