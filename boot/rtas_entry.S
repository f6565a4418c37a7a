/*
 * Entry of the firmware-resident RTAS runtime (LoPAPR §7.2.1 "RTAS Call
 * Mechanism"; Linux enter_rtas).  The OS calls the RTAS entry in real mode,
 * normally 32-bit big-endian, with %r3 = argument block, LR = return address.
 * The first word of the OS's RTAS area is a branch here (src/rtas/resident.rs).
 *
 * Position independent: everything is addressed relative to the address
 * bcl finds.  A lock word serialises callers (Linux already holds its RTAS
 * lock for the calls it makes; this keeps the single save area and stack
 * safe whatever the caller does).  The caller's MSR, %r1, %r2, %r13-%r31, CR
 * and LR are restored; the status is in the argument block, %r3 = 0.
 */
    .section .text.rtas_entry, "ax"
    .globl  rtas_runtime_entry
rtas_runtime_entry:
    mflr    %r0
    bcl     20, 31, 1f
1:  mflr    %r11
    mtlr    %r0
    addis   %r12, %r11, (rt_lock - 1b)@ha
    addi    %r12, %r12, (rt_lock - 1b)@l
2:  lwarx   %r0, 0, %r12
    cmpwi   %r0, 0
    bne-    2b
    li      %r0, 1
    stwcx.  %r0, 0, %r12
    bne-    2b
    isync

    addis   %r12, %r11, (rt_save - 1b)@ha
    addi    %r12, %r12, (rt_save - 1b)@l
    mfmsr   %r10
    std     %r10, 0(%r12)
    li      %r0, 1
    rldicr  %r0, %r0, 63, 0
    or      %r10, %r10, %r0
    mtmsrd  %r10
    isync
    std     %r1, 8(%r12)
    std     %r2, 16(%r12)
    mflr    %r0
    std     %r0, 24(%r12)
    mfcr    %r0
    std     %r0, 32(%r12)
    std     %r13, 40(%r12)
    std     %r14, 48(%r12)
    std     %r15, 56(%r12)
    std     %r16, 64(%r12)
    std     %r17, 72(%r12)
    std     %r18, 80(%r12)
    std     %r19, 88(%r12)
    std     %r20, 96(%r12)
    std     %r21, 104(%r12)
    std     %r22, 112(%r12)
    std     %r23, 120(%r12)
    std     %r24, 128(%r12)
    std     %r25, 136(%r12)
    std     %r26, 144(%r12)
    std     %r27, 152(%r12)
    std     %r28, 160(%r12)
    std     %r29, 168(%r12)
    std     %r30, 176(%r12)
    std     %r31, 184(%r12)

    addis   %r1, %r11, (__rt_stack_top - 1b)@ha
    addi    %r1, %r1, (__rt_stack_top - 1b)@l
    li      %r0, 0
    stdu    %r0, -64(%r1)
    addis   %r2, %r11, (.TOC. - 1b)@ha
    addi    %r2, %r2, (.TOC. - 1b)@l
    clrldi  %r3, %r3, 32
    bl      rtas_runtime_main

    bcl     20, 31, 3f
3:  mflr    %r11
    addis   %r12, %r11, (rt_save - 3b)@ha
    addi    %r12, %r12, (rt_save - 3b)@l
    ld      %r13, 40(%r12)
    ld      %r14, 48(%r12)
    ld      %r15, 56(%r12)
    ld      %r16, 64(%r12)
    ld      %r17, 72(%r12)
    ld      %r18, 80(%r12)
    ld      %r19, 88(%r12)
    ld      %r20, 96(%r12)
    ld      %r21, 104(%r12)
    ld      %r22, 112(%r12)
    ld      %r23, 120(%r12)
    ld      %r24, 128(%r12)
    ld      %r25, 136(%r12)
    ld      %r26, 144(%r12)
    ld      %r27, 152(%r12)
    ld      %r28, 160(%r12)
    ld      %r29, 168(%r12)
    ld      %r30, 176(%r12)
    ld      %r31, 184(%r12)
    ld      %r0, 32(%r12)
    mtcr    %r0
    ld      %r0, 24(%r12)
    mtlr    %r0
    ld      %r2, 16(%r12)
    ld      %r1, 8(%r12)
    ld      %r10, 0(%r12)
    addis   %r11, %r11, (rt_lock - 3b)@ha
    addi    %r11, %r11, (rt_lock - 3b)@l
    lwsync
    li      %r0, 0
    stw     %r0, 0(%r11)
    mtmsrd  %r10
    isync
    li      %r3, 0
    blr

    .section .bss
    .balign 8
rt_lock:
    .space  8
rt_save:
    .space  192
