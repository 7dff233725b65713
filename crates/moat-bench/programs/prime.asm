# Prime test: trial division of 10 000 019 by 2, 3, ... while d * d <= n (3 161 divisors, eight
# instructions each, one of them a 64-bit modulo). Touches no memory. Result: 1 (it is prime).
    mov %r6, 10000019
    mov %r0, 1
    mov %r2, 2
loop:
    mov %r3, %r2
    mul %r3, %r2
    jgt %r3, %r6, done
    mov %r4, %r6
    mod %r4, %r2
    jeq %r4, 0, composite
    add %r2, 1
    ja loop
composite:
    mov %r0, 0
done:
    exit
