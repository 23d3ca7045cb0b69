package dataplane

// This is the package's one cgo preamble with build flags; the C files
// beside it (classify.c, flows.c, worker.c) are compiled with them.

/*
#cgo pkg-config: libdpdk
#cgo CFLAGS: -O3 -Wall -Wextra -Wno-unused-parameter -std=gnu11 -fno-strict-aliasing
*/
import "C"
