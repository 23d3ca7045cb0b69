//go:build !purego

#include "textflag.h"

DATA iota8<>+0(SB)/4, $0
DATA iota8<>+4(SB)/4, $1
DATA iota8<>+8(SB)/4, $2
DATA iota8<>+12(SB)/4, $3
DATA iota8<>+16(SB)/4, $4
DATA iota8<>+20(SB)/4, $5
DATA iota8<>+24(SB)/4, $6
DATA iota8<>+28(SB)/4, $7
GLOBL iota8<>(SB), RODATA|NOPTR, $32

// func slotsAVX2(sl *[chunkSize]uint32, n int, in, out, m0, m1, m2 uint32)
//
// Per lane (j = 0..7, then +8 each round): x = j XOR in, three times
// x = (x·m) AND 1023, x = x XOR (x >> 5); then x XOR out: slotsGo.
TEXT ·slotsAVX2(SB), NOSPLIT, $0-36
	MOVQ         sl+0(FP), DI
	MOVQ         n+8(FP), CX
	MOVL         in+16(FP), AX
	MOVQ         AX, X1
	VPBROADCASTD X1, Y1
	MOVL         out+20(FP), AX
	MOVQ         AX, X2
	VPBROADCASTD X2, Y2
	MOVL         m0+24(FP), AX
	MOVQ         AX, X3
	VPBROADCASTD X3, Y3
	MOVL         m1+28(FP), AX
	MOVQ         AX, X4
	VPBROADCASTD X4, Y4
	MOVL         m2+32(FP), AX
	MOVQ         AX, X5
	VPBROADCASTD X5, Y5
	MOVL         $1023, AX
	MOVQ         AX, X6
	VPBROADCASTD X6, Y6
	MOVL         $8, AX
	MOVQ         AX, X7
	VPBROADCASTD X7, Y7
	VMOVDQU      iota8<>(SB), Y0

loop:
	CMPQ    CX, $0
	JLE     done
	VPXOR   Y0, Y1, Y8
	VPMULLD Y3, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLD  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VPMULLD Y4, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLD  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VPMULLD Y5, Y8, Y8
	VPAND   Y6, Y8, Y8
	VPSRLD  $5, Y8, Y9
	VPXOR   Y9, Y8, Y8
	VPXOR   Y2, Y8, Y8
	VMOVDQU Y8, (DI)
	ADDQ    $32, DI
	VPADDD  Y7, Y0, Y0
	SUBQ    $8, CX
	JMP     loop

done:
	VZEROUPPER
	RET

DATA chunk8<>+0(SB)/4, $0x0000
DATA chunk8<>+4(SB)/4, $0x0400
DATA chunk8<>+8(SB)/4, $0x0800
DATA chunk8<>+12(SB)/4, $0x0c00
DATA chunk8<>+16(SB)/4, $0x1000
DATA chunk8<>+20(SB)/4, $0x1400
DATA chunk8<>+24(SB)/4, $0x1800
DATA chunk8<>+28(SB)/4, $0x1c00
GLOBL chunk8<>(SB), RODATA|NOPTR, $32

// func rowAVX2(row *[chunks]uint32, in, out *[chunks]uint16, j, m0, m1, m2 uint32)
//
// Per lane (chunk c = 0..7, then +8 each round): x = j XOR in[c], three
// times x = (x·m) AND 1023, x = x XOR (x >> 5); then c·1024 OR
// (x XOR out[c]): rowGo from chunk 0.
TEXT ·rowAVX2(SB), NOSPLIT, $0-40
	MOVQ         row+0(FP), DI
	MOVQ         in+8(FP), SI
	MOVQ         out+16(FP), DX
	MOVL         j+24(FP), AX
	MOVQ         AX, X1
	VPBROADCASTD X1, Y1
	MOVL         m0+28(FP), AX
	MOVQ         AX, X3
	VPBROADCASTD X3, Y3
	MOVL         m1+32(FP), AX
	MOVQ         AX, X4
	VPBROADCASTD X4, Y4
	MOVL         m2+36(FP), AX
	MOVQ         AX, X5
	VPBROADCASTD X5, Y5
	MOVL         $1023, AX
	MOVQ         AX, X6
	VPBROADCASTD X6, Y6
	MOVL         $0x2000, AX
	MOVQ         AX, X7
	VPBROADCASTD X7, Y7
	VMOVDQU      chunk8<>(SB), Y0
	MOVQ         $8, CX

rowloop:
	VPMOVZXWD (SI), Y8
	VPXOR     Y1, Y8, Y8
	VPMULLD   Y3, Y8, Y8
	VPAND     Y6, Y8, Y8
	VPSRLD    $5, Y8, Y9
	VPXOR     Y9, Y8, Y8
	VPMULLD   Y4, Y8, Y8
	VPAND     Y6, Y8, Y8
	VPSRLD    $5, Y8, Y9
	VPXOR     Y9, Y8, Y8
	VPMULLD   Y5, Y8, Y8
	VPAND     Y6, Y8, Y8
	VPSRLD    $5, Y8, Y9
	VPXOR     Y9, Y8, Y8
	VPMOVZXWD (DX), Y9
	VPXOR     Y9, Y8, Y8
	VPAND     Y6, Y8, Y8
	VPOR      Y0, Y8, Y8
	VMOVDQU   Y8, (DI)
	ADDQ      $32, DI
	ADDQ      $16, SI
	ADDQ      $16, DX
	VPADDD    Y7, Y0, Y0
	DECQ      CX
	JNZ       rowloop
	VZEROUPPER
	RET
