/*
 * The conformance client's target-only entry and call gates.
 *
 * _start: papr-fw enters the client at its load base the way it enters a
 * Linux kernel (linux-expectations.md §1.1): 32-bit big-endian real mode,
 * %r1 = a stack, %r3/%r4 = initrd, %r5 = the client-interface entry.  The
 * entry state is passed to conformance_main for checking; the program runs
 * in 64-bit mode on the stack it was given (as Linux does), or on its own
 * stack if it got none.
 *
 * conf_call(entry, a0, a1, mode32): call `entry` as a function with
 * %r3 = a0, %r4 = a1, from 32-bit mode (MSR[SF] = 0, as Linux's enter_prom
 * and enter_rtas do) when mode32 != 0, else from 64-bit mode.  Every
 * register the 64-bit ABI preserves is saved here too (a 32-bit callee may
 * clobber high halves), 64-bit mode is restored, and the callee's %r3 is
 * returned.
 *
 * conf_secondary: where RTAS start-cpu starts a second CPU (64-bit real
 * mode, %r3 = a mailbox): it stores its %r3 at +8 and 1 at +0, then
 * stops itself with RTAS stop-self (H_RTAS on the block at mailbox + 16).
 */
    .section .text.entry, "ax"
    .globl  _start
_start:
    mr      %r31, %r3
    mr      %r30, %r4
    mr      %r29, %r5
    mr      %r28, %r1
    mfmsr   %r27
    mfmsr   %r11
    li      %r12, 1
    rldicr  %r12, %r12, 63, 0
    or      %r11, %r11, %r12
    mtmsrd  %r11
    isync
    lis     %r2, .TOC.@ha
    addi    %r2, %r2, .TOC.@l
    lis     %r4, __bss_start@ha
    addi    %r4, %r4, __bss_start@l
    lis     %r5, __bss_end@ha
    addi    %r5, %r5, __bss_end@l
    li      %r0, 0
1:  cmpld   %r4, %r5
    bge     2f
    std     %r0, 0(%r4)
    addi    %r4, %r4, 8
    b       1b
2:  clrldi  %r1, %r28, 32
    cmpdi   %r1, 0x1000
    bge     3f
    lis     %r1, conf_stack_top@ha
    addi    %r1, %r1, conf_stack_top@l
3:  rldicr  %r1, %r1, 0, 59
    stdu    %r0, -128(%r1)
    clrldi  %r3, %r31, 32
    clrldi  %r4, %r30, 32
    clrldi  %r5, %r29, 32
    clrldi  %r6, %r28, 32
    mr      %r7, %r27
    bl      conformance_main
4:  b       4b

    .section .text, "ax"
    .set    FRAME, 208
    .globl  conf_call
conf_call:
    mflr    %r0
    std     %r0, 16(%r1)
    mfcr    %r12
    stw     %r12, 8(%r1)
    stdu    %r1, -FRAME(%r1)
    std     %r2, 24(%r1)
    std     %r13, 40(%r1)
    std     %r14, 48(%r1)
    std     %r15, 56(%r1)
    std     %r16, 64(%r1)
    std     %r17, 72(%r1)
    std     %r18, 80(%r1)
    std     %r19, 88(%r1)
    std     %r20, 96(%r1)
    std     %r21, 104(%r1)
    std     %r22, 112(%r1)
    std     %r23, 120(%r1)
    std     %r24, 128(%r1)
    std     %r25, 136(%r1)
    std     %r26, 144(%r1)
    std     %r27, 152(%r1)
    std     %r28, 160(%r1)
    std     %r29, 168(%r1)
    std     %r30, 176(%r1)
    std     %r31, 184(%r1)
    mtctr   %r3
    mr      %r3, %r4
    mr      %r4, %r5
    cmpdi   %r6, 0
    beq     1f
    mfmsr   %r11
    li      %r12, 1
    rldicr  %r12, %r12, 63, 0
    andc    %r11, %r11, %r12
    mtmsrd  %r11
    isync
1:  bctrl
    mfmsr   %r11
    li      %r12, 1
    rldicr  %r12, %r12, 63, 0
    or      %r11, %r11, %r12
    mtmsrd  %r11
    isync
    clrldi  %r1, %r1, 32
    ld      %r2, 24(%r1)
    ld      %r13, 40(%r1)
    ld      %r14, 48(%r1)
    ld      %r15, 56(%r1)
    ld      %r16, 64(%r1)
    ld      %r17, 72(%r1)
    ld      %r18, 80(%r1)
    ld      %r19, 88(%r1)
    ld      %r20, 96(%r1)
    ld      %r21, 104(%r1)
    ld      %r22, 112(%r1)
    ld      %r23, 120(%r1)
    ld      %r24, 128(%r1)
    ld      %r25, 136(%r1)
    ld      %r26, 144(%r1)
    ld      %r27, 152(%r1)
    ld      %r28, 160(%r1)
    ld      %r29, 168(%r1)
    ld      %r30, 176(%r1)
    ld      %r31, 184(%r1)
    addi    %r1, %r1, FRAME
    ld      %r0, 16(%r1)
    mtlr    %r0
    lwz     %r12, 8(%r1)
    mtcrf   0xff, %r12
    blr

    .globl  conf_secondary
conf_secondary:
    li      %r0, 1
    stw     %r3, 8(%r3)
    sync
    stw     %r0, 0(%r3)
    sync
    addi    %r4, %r3, 16
    li      %r3, 0
    ori     %r3, %r3, 0xf000
    sc      1
1:  b       1b

    .section .bss
    .balign 16
conf_stack:
    .space  0x10000
conf_stack_top:
