/*
 * The Open Firmware client interface boundary (IEEE 1275 PowerPC binding §8;
 * Linux enter_prom, GRUB's ieee1275 entry).
 *
 * cif_entry: clients call it as a function in 32-bit big-endian real mode with
 * %r3 = physical address of the argument block.  It saves the caller's MSR and
 * every register a 32- or 64-bit ABI expects preserved (%r1, %r2, %r13-%r31,
 * CR, LR), switches to 64-bit mode and the firmware's own client-interface
 * stack, calls rust_cif_entry(args), then restores all of it (MSR last, which
 * may drop back to 32-bit mode) and returns %r3.  Clients are single threaded
 * while they use the interface, so one save area suffices.
 *
 * enter_client: start a client program (a kernel, a boot loader) with the
 * register state its entry expects: %r3/%r4 (initrd or arguments), %r5 = the
 * client-interface entry, %r1 = a stack the firmware gave it, via rfid with
 * the MSR the caller chose.  Never returns.
 */
    .section .text.boot, "ax"

    .set    SAVE_MSR, 0
    .set    SAVE_R1, 8
    .set    SAVE_R2, 16
    .set    SAVE_LR, 24
    .set    SAVE_CR, 32
    .set    SAVE_GPRS, 40               /* %r13..%r31 */
    .set    SAVE_SIZE, 40 + 19 * 8

    .globl  cif_entry
cif_entry:
    lis     %r11, cif_save@ha
    addi    %r11, %r11, cif_save@l
    clrldi  %r11, %r11, 32
    mfmsr   %r12
    std     %r12, SAVE_MSR(%r11)
    li      %r0, 1
    rldicr  %r0, %r0, 63, 0
    or      %r12, %r12, %r0
    mtmsrd  %r12
    isync
    std     %r1, SAVE_R1(%r11)
    std     %r2, SAVE_R2(%r11)
    mflr    %r0
    std     %r0, SAVE_LR(%r11)
    mfcr    %r0
    std     %r0, SAVE_CR(%r11)
    std     %r13, SAVE_GPRS + 0*8(%r11)
    std     %r14, SAVE_GPRS + 1*8(%r11)
    std     %r15, SAVE_GPRS + 2*8(%r11)
    std     %r16, SAVE_GPRS + 3*8(%r11)
    std     %r17, SAVE_GPRS + 4*8(%r11)
    std     %r18, SAVE_GPRS + 5*8(%r11)
    std     %r19, SAVE_GPRS + 6*8(%r11)
    std     %r20, SAVE_GPRS + 7*8(%r11)
    std     %r21, SAVE_GPRS + 8*8(%r11)
    std     %r22, SAVE_GPRS + 9*8(%r11)
    std     %r23, SAVE_GPRS + 10*8(%r11)
    std     %r24, SAVE_GPRS + 11*8(%r11)
    std     %r25, SAVE_GPRS + 12*8(%r11)
    std     %r26, SAVE_GPRS + 13*8(%r11)
    std     %r27, SAVE_GPRS + 14*8(%r11)
    std     %r28, SAVE_GPRS + 15*8(%r11)
    std     %r29, SAVE_GPRS + 16*8(%r11)
    std     %r30, SAVE_GPRS + 17*8(%r11)
    std     %r31, SAVE_GPRS + 18*8(%r11)

    lis     %r1, __cif_stack_top@ha
    addi    %r1, %r1, __cif_stack_top@l
    li      %r0, 0
    stdu    %r0, -64(%r1)
    lis     %r2, .TOC.@ha
    addi    %r2, %r2, .TOC.@l
    clrldi  %r3, %r3, 32                /* the client's high halves are not ours to trust */
    bl      rust_cif_entry

    lis     %r11, cif_save@ha
    addi    %r11, %r11, cif_save@l
    ld      %r13, SAVE_GPRS + 0*8(%r11)
    ld      %r14, SAVE_GPRS + 1*8(%r11)
    ld      %r15, SAVE_GPRS + 2*8(%r11)
    ld      %r16, SAVE_GPRS + 3*8(%r11)
    ld      %r17, SAVE_GPRS + 4*8(%r11)
    ld      %r18, SAVE_GPRS + 5*8(%r11)
    ld      %r19, SAVE_GPRS + 6*8(%r11)
    ld      %r20, SAVE_GPRS + 7*8(%r11)
    ld      %r21, SAVE_GPRS + 8*8(%r11)
    ld      %r22, SAVE_GPRS + 9*8(%r11)
    ld      %r23, SAVE_GPRS + 10*8(%r11)
    ld      %r24, SAVE_GPRS + 11*8(%r11)
    ld      %r25, SAVE_GPRS + 12*8(%r11)
    ld      %r26, SAVE_GPRS + 13*8(%r11)
    ld      %r27, SAVE_GPRS + 14*8(%r11)
    ld      %r28, SAVE_GPRS + 15*8(%r11)
    ld      %r29, SAVE_GPRS + 16*8(%r11)
    ld      %r30, SAVE_GPRS + 17*8(%r11)
    ld      %r31, SAVE_GPRS + 18*8(%r11)
    ld      %r0, SAVE_CR(%r11)
    mtcr    %r0
    ld      %r0, SAVE_LR(%r11)
    mtlr    %r0
    ld      %r2, SAVE_R2(%r11)
    ld      %r1, SAVE_R1(%r11)
    ld      %r12, SAVE_MSR(%r11)
    mtmsrd  %r12
    isync
    blr

/* enter_client(entry %r3, r3 %r4, r4 %r5, cif %r6, stack %r7, msr %r8) */
    .globl  enter_client
enter_client:
    mtsrr0  %r3
    mtsrr1  %r8
    mr      %r3, %r4
    mr      %r4, %r5
    mr      %r5, %r6
    mr      %r1, %r7
    li      %r0, 0
    mtlr    %r0
    mtctr   %r0
    li      %r6, 0
    li      %r7, 0
    li      %r8, 0
    li      %r9, 0
    li      %r10, 0
    li      %r11, 0
    li      %r12, 0
    rfid

/* enter_client_toc(entry, r3, r4, cif, stack, msr, toc %r9): as
 * enter_client with %r2 = toc (ELFv1 clients). */
    .globl  enter_client_toc
enter_client_toc:
    mr      %r2, %r9
    b       enter_client

    .section .bss
    .balign 8
cif_save:
    .space  SAVE_SIZE
