//go:build !purego

#include "textflag.h"

// Both functions compute in 16-bit lanes (VPMULLW): only the low 10 bits
// of each value are kept, and those are the same in 16- and 32-bit
// arithmetic.

DATA iota16<>+0(SB)/2, $0
DATA iota16<>+2(SB)/2, $1
DATA iota16<>+4(SB)/2, $2
DATA iota16<>+6(SB)/2, $3
DATA iota16<>+8(SB)/2, $4
DATA iota16<>+10(SB)/2, $5
DATA iota16<>+12(SB)/2, $6
DATA iota16<>+14(SB)/2, $7
DATA iota16<>+16(SB)/2, $8
DATA iota16<>+18(SB)/2, $9
DATA iota16<>+20(SB)/2, $10
DATA iota16<>+22(SB)/2, $11
DATA iota16<>+24(SB)/2, $12
DATA iota16<>+26(SB)/2, $13
DATA iota16<>+28(SB)/2, $14
DATA iota16<>+30(SB)/2, $15
GLOBL iota16<>(SB), RODATA|NOPTR, $32

// func slotsAVX2(sl *[chunkSize]uint16, n int, in, out, m0, m1, m2 uint32)
//
// Per lane (j = 0..15, then +16 each round): x = j XOR in, three times
// x = (x·m) AND 1023, x = x XOR (x >> 5); then x XOR out: slotsGo.
TEXT ·slotsAVX2(SB), NOSPLIT, $0-36
	MOVQ         sl+0(FP), DI
	MOVQ         n+8(FP), CX
	MOVL         in+16(FP), AX
	MOVQ         AX, X1
	VPBROADCASTW X1, Y1
	MOVL         out+20(FP), AX
	MOVQ         AX, X2
	VPBROADCASTW X2, Y2
	MOVL         m0+24(FP), AX
	MOVQ         AX, X3
	VPBROADCASTW X3, Y3
	MOVL         m1+28(FP), AX
	MOVQ         AX, X4
	VPBROADCASTW X4, Y4
	MOVL         m2+32(FP), AX
	MOVQ         AX, X5
	VPBROADCASTW X5, Y5
	MOVL         $1023, AX
	MOVQ         AX, X6
	VPBROADCASTW X6, Y6
	MOVL         $16, AX
	MOVQ         AX, X7
	VPBROADCASTW X7, Y7
	VMOVDQU      iota16<>(SB), Y0

loop:
	CMPQ    CX, $0
	JLE     done
	VPXOR   Y0, Y1, Y8
	VPMULLW Y3, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLW  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VPMULLW Y4, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLW  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VPMULLW Y5, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLW  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VPXOR   Y2, Y8, Y8
	VMOVDQU Y8, (DI)
	ADDQ    $32, DI
	VPADDW  Y7, Y0, Y0
	SUBQ    $16, CX
	JMP     loop

done:
	VZEROUPPER
	RET

DATA chunk16<>+0(SB)/2, $0x0
DATA chunk16<>+2(SB)/2, $0x400
DATA chunk16<>+4(SB)/2, $0x800
DATA chunk16<>+6(SB)/2, $0xc00
DATA chunk16<>+8(SB)/2, $0x1000
DATA chunk16<>+10(SB)/2, $0x1400
DATA chunk16<>+12(SB)/2, $0x1800
DATA chunk16<>+14(SB)/2, $0x1c00
DATA chunk16<>+16(SB)/2, $0x2000
DATA chunk16<>+18(SB)/2, $0x2400
DATA chunk16<>+20(SB)/2, $0x2800
DATA chunk16<>+22(SB)/2, $0x2c00
DATA chunk16<>+24(SB)/2, $0x3000
DATA chunk16<>+26(SB)/2, $0x3400
DATA chunk16<>+28(SB)/2, $0x3800
DATA chunk16<>+30(SB)/2, $0x3c00
GLOBL chunk16<>(SB), RODATA|NOPTR, $32

// func rowAVX2(row *[chunks]uint16, in, out *[chunks]uint16, j, m0, m1, m2 uint32)
//
// Per lane (chunk c = 0..15, then +16 each round): x = j XOR in[c], three
// times x = (x·m) AND 1023, x = x XOR (x >> 5); then c·1024 OR
// ((x XOR out[c]) AND 1023): rowGo from chunk 0.
TEXT ·rowAVX2(SB), NOSPLIT, $0-40
	MOVQ         row+0(FP), DI
	MOVQ         in+8(FP), SI
	MOVQ         out+16(FP), DX
	MOVL         j+24(FP), AX
	MOVQ         AX, X1
	VPBROADCASTW X1, Y1
	MOVL         m0+28(FP), AX
	MOVQ         AX, X3
	VPBROADCASTW X3, Y3
	MOVL         m1+32(FP), AX
	MOVQ         AX, X4
	VPBROADCASTW X4, Y4
	MOVL         m2+36(FP), AX
	MOVQ         AX, X5
	VPBROADCASTW X5, Y5
	MOVL         $1023, AX
	MOVQ         AX, X6
	VPBROADCASTW X6, Y6
	MOVL         $0x4000, AX
	MOVQ         AX, X7
	VPBROADCASTW X7, Y7
	VMOVDQU      chunk16<>(SB), Y0
	MOVQ         $4, CX

rowloop:
	VMOVDQU (SI), Y8
	VPXOR   Y1, Y8, Y8
	VPMULLW Y3, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLW  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VPMULLW Y4, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLW  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VPMULLW Y5, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLW  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VMOVDQU (DX), Y9
	VPXOR   Y9, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPOR    Y0, Y8, Y8
	VMOVDQU Y8, (DI)
	ADDQ    $32, DI
	ADDQ    $32, SI
	ADDQ    $32, DX
	VPADDW  Y7, Y0, Y0
	DECQ    CX
	JNZ     rowloop
	VZEROUPPER
	RET
