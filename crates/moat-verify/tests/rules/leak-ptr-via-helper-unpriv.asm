# rule: an unprivileged program may not copy a spilled pointer into a map through a helper's memory argument.
# FIXME: moat accepts this leak: check_mem_arg only refuses uninitialised stack bytes for an unprivileged loader, not bytes of a spilled pointer, so bpf_map_update_elem copies the address of the stack into the map; the kernel refuses ("invalid read from stack", check_stack_range_initialized rejects spilled pointers for !allow_ptr_leaks). Real instance: build/exposeptr.o.
# context: buffer 8
# map: values hash 4 8 16
# unprivileged
# accept
stxdw [%r10-8], %r10        # 0: a pointer spilled
stw [%r10-12], 0            # 1: key
mov %r2, %r10               # 2
add %r2, -12                # 3
mov %r3, %r10               # 4
add %r3, -8                 # 5: value = the spilled pointer
lddw %r1, map_idx(0)        # 6
mov %r4, 0                  # 8
call 2                      # 9: bpf_map_update_elem
mov %r0, 0
exit
