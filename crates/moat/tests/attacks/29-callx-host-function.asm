# callx to a host Rust function's address.
# expect: BadCallTarget at 2
lddw %r2, {HOSTFN}
call %r2
exit
