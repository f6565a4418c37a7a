/*
 * papr-fw entry (QEMU pseries contract §1.3: NIP = 0x100, MSR = 0 — 32-bit,
 * big-endian, real mode, no stack — %r3 = physical address of the flattened tree).
 *
 * 0x100 is also the System Reset vector.  The first time through, __fw_started
 * is 0 (the image is re-copied from QEMU's ROM blob on every machine reset);
 * once Rust runs it is 1, and a later entry here is a system-reset interrupt
 * that is reported like any other unexpected interrupt.
 */
    .section .vectors.entry, "ax"
    .globl _start
_start:
    b       _boot

    .section .text.boot, "ax"
    .globl _boot
_boot:
    mtsprg1 %r3
    lis     %r3, __fw_started@ha
    lwz     %r3, __fw_started@l(%r3)
    cmpwi   %r3, 0
    beq     1f
    li      %r3, 0x100
    b       exc_common
1:
    mfsprg1 %r31                     /* %r31 = flattened tree from QEMU */

    /* 64-bit mode (MSR[SF]) and machine checks (MSR[ME]) before any Rust
     * code; floating point and vector off (QEMU >= 9.0 enters with MSR[FP]
     * set, older QEMU without): the firmware uses neither, and a stray use
     * then traps the same way on every QEMU. */
    mfmsr   %r11
    li      %r12, 1
    rldicr  %r12, %r12, 63, 0
    or      %r11, %r11, %r12
    ori     %r11, %r11, 0x1000
    lis     %r12, 0x0280                /* MSR[VEC] 0x02000000 | MSR[VSX] 0x00800000 */
    ori     %r12, %r12, 0x2000          /* MSR[FP] */
    andc    %r11, %r11, %r12
    mtmsrd  %r11
    isync

    lis     %r2, .TOC.@ha
    addi    %r2, %r2, .TOC.@l
    lis     %r1, __stack_top@ha
    addi    %r1, %r1, __stack_top@l
    li      %r0, 0
    stdu    %r0, -64(%r1)             /* terminate the back chain */

    /* Zero .bss. */
    lis     %r4, __bss_start@ha
    addi    %r4, %r4, __bss_start@l
    lis     %r5, __bss_end@ha
    addi    %r5, %r5, __bss_end@l
2:  cmpld   %r4, %r5
    bge     3f
    std     %r0, 0(%r4)
    addi    %r4, %r4, 8
    b       2b
3:
    mr      %r3, %r31
    bl      rust_start
4:  b       4b

/* Set to 1 by Rust once it runs; see the comment at the top. */
    .section .data, "aw"
    .balign 8
    .globl __fw_started
__fw_started:
    .long 0
    .long 0
