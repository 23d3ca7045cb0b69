package dataplane

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The command channel's C test (testdata/cmdtest.c) runs the ring, the flow
// table and the classifier as a plain C program, no DPDK runtime, under
// the sanitizers: commands against the classifier, a chunked dump, a dump
// whose waiter times out while the worker is stalled and which the worker
// then completes, and thousands of waiters racing a running worker.

// buildCmdTest compiles testdata/cmdtest.c with the package's C files and
// the given sanitizer flags; it skips the test when the toolchain lacks the
// sanitizer's runtime.
func buildCmdTest(t *testing.T, sanitize ...string) string {
	t.Helper()
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not found: the C test of the command channel needs it")
	}
	cflags, err := exec.Command("pkg-config", "--cflags", "libdpdk").Output()
	if err != nil {
		t.Fatalf("pkg-config --cflags libdpdk: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "cmdtest")
	args := append([]string{"-std=gnu11", "-O1", "-g", "-fno-omit-frame-pointer", "-pthread",
		"-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"}, sanitize...)
	args = append(args, strings.Fields(string(cflags))...)
	// rte_hash_crc.h needs rte_cpu_get_flag_enabled from librte_eal to
	// pick the CRC32C instruction; nothing else of DPDK runs.
	args = append(args, "-I.", "testdata/cmdtest.c", "cmd.c", "flows.c", "classify.c", "-lrte_eal", "-o", bin)
	out, err := exec.Command(gcc, args...).CombinedOutput()
	if err != nil {
		s := string(out)
		for _, lib := range []string{"-lasan", "-lubsan", "-ltsan", "libasan", "libubsan", "libtsan"} {
			if strings.Contains(s, "cannot find "+lib) || strings.Contains(s, lib+".so: No such file") {
				t.Skipf("the sanitizer runtime is missing (%s); install gcc's libasan/libubsan/libtsan:\n%s", lib, s)
			}
		}
		t.Fatalf("gcc %s: %v\n%s", strings.Join(args, " "), err, s)
	}
	return bin
}

func runCmdTest(t *testing.T, bin string, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cmd.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestCommandChannelASan: no AddressSanitizer or UndefinedBehaviorSanitizer
// report, every check passes; and the same build does catch the
// use-after-free of the dump as it was before the channel.
func TestCommandChannelASan(t *testing.T) {
	bin := buildCmdTest(t, "-fsanitize=address,undefined", "-fno-sanitize-recover=all")
	env := []string{"ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0", "UBSAN_OPTIONS=print_stacktrace=1"}
	out, err := runCmdTest(t, bin, env)
	t.Logf("cmdtest:\n%s", out)
	if err != nil || strings.Contains(out, "Sanitizer") || strings.Contains(out, "runtime error") ||
		!strings.Contains(out, "all checks passed") {
		t.Fatalf("cmdtest under ASan/UBSan: %v", err)
	}
	out, err = runCmdTest(t, bin, env, "legacy")
	if err == nil || !strings.Contains(out, "AddressSanitizer: heap-use-after-free") {
		t.Fatalf("the pre-channel dump (caller frees on timeout, worker writes late) was not caught: %v\n%s", err, out)
	}
	t.Logf("control: the pre-channel dump is caught: %s", firstLine(out, "heap-use-after-free"))
}

// TestCommandChannelTSan: the slot states' memory ordering, under
// ThreadSanitizer.
func TestCommandChannelTSan(t *testing.T) {
	bin := buildCmdTest(t, "-fsanitize=thread")
	out, err := runCmdTest(t, bin, []string{"TSAN_OPTIONS=halt_on_error=1"})
	t.Logf("cmdtest:\n%s", out)
	if strings.Contains(out, "FATAL: ThreadSanitizer: unexpected memory mapping") {
		t.Skip("ThreadSanitizer cannot run with this kernel's mmap randomisation (vm.mmap_rnd_bits)")
	}
	if err != nil || strings.Contains(out, "ThreadSanitizer") || !strings.Contains(out, "all checks passed") {
		t.Fatalf("cmdtest under TSan: %v", err)
	}
}

func firstLine(s, sub string) string {
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
