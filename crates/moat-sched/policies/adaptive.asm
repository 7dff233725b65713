# Adaptive quantum (after LibPreemptible): round robin whose quantum shrinks under load: base_quantum
# halved for every doubling of the queue (queue_len 1: base, 2-3: base/2, 4-7: base/4, ...), never
# below min_quantum.
# The sched context (moat_sched::program): now @0, nr_tasks @8 (u32), queue_len @12 (u32),
# quantum @16 (out), base_quantum @24, min_quantum @32; tasks from @64, 32 bytes each:
# arrival +0, deadline +8, service +16, enqueued +24. r0: the index of the task to run.
    mov %r6, %r1
    ldxw %r7, [%r6+8]
    mov %r0, 0
    mov %r8, -1
    mov %r9, 0
loop:
    jge %r9, %r7, done
    jge %r9, 32, done
    mov %r3, %r9
    lsh %r3, 5
    add %r3, %r6
    ldxdw %r4, [%r3+88]
    # Branch-free minimum (one verifier path per iteration): r1 = all ones if r4 < r8 (the
    # borrow of r4 - r8), then r8 and r0 take r4 and the index where it is.
    mov %r1, %r4
    xor %r1, -1
    and %r1, %r8
    mov %r2, %r4
    xor %r2, %r8
    xor %r2, -1
    mov %r5, %r4
    sub %r5, %r8
    and %r2, %r5
    or %r1, %r2
    rsh %r1, 63
    mov %r2, 0
    sub %r2, %r1
    mov %r1, %r4
    xor %r1, %r8
    and %r1, %r2
    xor %r8, %r1
    mov %r1, %r9
    xor %r1, %r0
    and %r1, %r2
    xor %r0, %r1
    add %r9, 1
    ja loop
done:
    ldxdw %r3, [%r6+24]
    ldxw %r4, [%r6+12]
    ldxdw %r5, [%r6+32]
shrink:
    jlt %r4, 2, clamp
    rsh %r3, 1
    rsh %r4, 1
    ja shrink
clamp:
    jge %r3, %r5, store
    mov %r3, %r5
store:
    stxdw [%r6+16], %r3
    exit
