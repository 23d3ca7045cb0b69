//go:build cgo && linux

package timerslack

/*
#include <sys/prctl.h>

// The value of NS (doc.go); TestSlack checks that they agree.
#define SHOAL_TIMERSLACK_NS 500000UL

static void __attribute__((constructor)) shoal_timerslack(void)
{
	prctl(PR_SET_TIMERSLACK, SHOAL_TIMERSLACK_NS, 0UL, 0UL, 0UL);
}

static unsigned long shoal_timerslack_ns(void) { return SHOAL_TIMERSLACK_NS; }
*/
import "C"

// cNS is the slack the constructor sets.
func cNS() uint64 { return uint64(C.shoal_timerslack_ns()) }
