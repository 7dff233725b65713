# Reads another program's map value, its address leaked to the attacker.
# expect: OutOfBounds at 2
lddw %r1, {VICTIM_VALUE}
ldxdw %r0, [%r1]
exit
