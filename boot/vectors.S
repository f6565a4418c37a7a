/*
 * Interrupt vectors 0x200..0x17e0 (Power ISA 3.x Book III §7.5: every architected
 * interrupt, plus the implementation-specific ones up to 0x1700).  Each 32-byte
 * slot saves %r3 in SPRG1, loads its own address as the vector number, and joins
 * exc_common, which saves the whole register state into an ExceptionFrame on the
 * dedicated exception stack and calls the Rust reporter (never returns).
 * Interrupts enter with MSR[SF] = 1, so exc_common runs in 64-bit mode.
 */
    .section .vectors, "ax"
    .balign 0x100
    .set    vec, 0x200
    .rept   (0x1800 - 0x200) / 0x20
    .balign 0x20
    mtsprg1 %r3
    li      %r3, vec
    b       exc_common
    .set    vec, vec + 0x20
    .endr

    .section .text.boot, "ax"
/* ExceptionFrame layout (src/arch/exception.rs): gpr[32], vector, srr0, srr1, dar, dsisr, lr, ctr, cr, xer, msr */
    .set    FRAME_GPRS, 0
    .set    FRAME_VECTOR, 32*8
    .set    FRAME_SRR0, 33*8
    .set    FRAME_SRR1, 34*8
    .set    FRAME_DAR, 35*8
    .set    FRAME_DSISR, 36*8
    .set    FRAME_LR, 37*8
    .set    FRAME_CTR, 38*8
    .set    FRAME_CR, 39*8
    .set    FRAME_XER, 40*8
    .set    FRAME_MSR, 41*8
    .set    FRAME_SIZE, 42*8

    .globl  exc_common
exc_common:
    mtsprg2 %r1
    lis     %r1, __exc_stack_top@ha
    addi    %r1, %r1, __exc_stack_top@l
    subi    %r1, %r1, FRAME_SIZE + 128
    std     %r3, FRAME_VECTOR(%r1)
    std     %r0, 0*8(%r1)
    mfsprg2 %r0
    std     %r0, 1*8(%r1)
    std     %r2, 2*8(%r1)
    mfsprg1 %r0
    std     %r0, 3*8(%r1)
    std     %r4, 4*8(%r1)
    std     %r5, 5*8(%r1)
    std     %r6, 6*8(%r1)
    std     %r7, 7*8(%r1)
    std     %r8, 8*8(%r1)
    std     %r9, 9*8(%r1)
    std     %r10, 10*8(%r1)
    std     %r11, 11*8(%r1)
    std     %r12, 12*8(%r1)
    std     %r13, 13*8(%r1)
    std     %r14, 14*8(%r1)
    std     %r15, 15*8(%r1)
    std     %r16, 16*8(%r1)
    std     %r17, 17*8(%r1)
    std     %r18, 18*8(%r1)
    std     %r19, 19*8(%r1)
    std     %r20, 20*8(%r1)
    std     %r21, 21*8(%r1)
    std     %r22, 22*8(%r1)
    std     %r23, 23*8(%r1)
    std     %r24, 24*8(%r1)
    std     %r25, 25*8(%r1)
    std     %r26, 26*8(%r1)
    std     %r27, 27*8(%r1)
    std     %r28, 28*8(%r1)
    std     %r29, 29*8(%r1)
    std     %r30, 30*8(%r1)
    std     %r31, 31*8(%r1)
    mfsrr0  %r0
    std     %r0, FRAME_SRR0(%r1)
    mfsrr1  %r0
    std     %r0, FRAME_SRR1(%r1)
    mfdar   %r0
    std     %r0, FRAME_DAR(%r1)
    mfdsisr %r0
    std     %r0, FRAME_DSISR(%r1)
    mflr    %r0
    std     %r0, FRAME_LR(%r1)
    mfctr   %r0
    std     %r0, FRAME_CTR(%r1)
    mfcr    %r0
    std     %r0, FRAME_CR(%r1)
    mfxer   %r0
    std     %r0, FRAME_XER(%r1)
    mfmsr   %r0
    std     %r0, FRAME_MSR(%r1)
    mr      %r3, %r1
    lis     %r2, .TOC.@ha
    addi    %r2, %r2, .TOC.@l
    li      %r0, 0
    stdu    %r0, -128(%r1)
    bl      rust_exception
5:  b       5b
