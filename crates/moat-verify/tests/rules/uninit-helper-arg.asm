# rule: every argument a helper takes must be initialised (bpf_map_update_elem without its value).
# context: buffer 8
# map: values hash 4 8 16
# reject: UninitRegister at 6
stw [%r10-4], 0             # 0
mov %r2, %r10               # 1
add %r2, -4                 # 2
lddw %r1, map_idx(0)        # 3
mov %r4, 0                  # 5
call 2                      # 6: r3 never written
mov %r0, 0
exit
