# Reads its uninitialised stack where the victim left a secret in its last run: stacks are zeroed per run.
# expect: ok 0
ldxdw %r0, [%r10-8]
exit
