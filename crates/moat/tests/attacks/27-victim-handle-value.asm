# Uses the victim's handle value for its map 0: handles are per-program indices, so it names the attacker's own map; the victim's map is untouched.
# expect: ok 0
stw [%r10-4], 0
stdw [%r10-16], 0xdead
lddw %r1, 0x6d61700000000000
mov %r2, %r10
add %r2, -4
mov %r3, %r10
add %r3, -16
mov %r4, 0
call 2
exit
