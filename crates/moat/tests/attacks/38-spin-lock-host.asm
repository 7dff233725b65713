# bpf_spin_lock on a host address (a compare-exchange into host memory).
# expect: Helper bpf_spin_lock OutOfBounds arg 1 at 2
lddw %r1, {HEAP}
call 93
exit
