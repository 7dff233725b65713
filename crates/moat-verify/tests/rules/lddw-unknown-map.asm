# rule: lddw may only name maps the program has.
# context: buffer 8
# map: values array 4 8 1
# reject: UnknownMap at 0
lddw %r1, map_idx(1)
mov %r0, 0
exit
