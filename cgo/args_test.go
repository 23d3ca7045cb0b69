package dpdk

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestEALArgs(t *testing.T) {
	cfg := EALConfig{
		Lcores:     "0@(0-1),1@(0-1)",
		MainLcore:  1,
		MemoryMB:   256,
		Hugepages:  false,
		InMemory:   true,
		FilePrefix: "shoal-x",
		NoPCI:      true,
		Vdevs:      []string{"net_null0", "net_tap0,iface=shoal0"},
		LogLevel:   "error",
		Extra:      []string{"--no-telemetry"},
	}
	got := EALArgs(cfg)[1:]
	want := []string{
		"--lcores", "0@(0-1),1@(0-1)", "--main-lcore", "1", "-m", "256",
		"--no-huge", "--no-shconf", "--file-prefix", "shoal-x", "--no-pci",
		"--vdev", "net_null0", "--vdev", "net_tap0,iface=shoal0",
		"--log-level", "error", "--no-telemetry",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("EALArgs:\n got %q\nwant %q", got, want)
	}
	if a := EALArgs(cfg); a[0] == "" {
		t.Errorf("argv[0] is empty")
	}

	// Zero config: only --no-huge; MainLcore 0 is left to DPDK.
	if got := EALArgs(EALConfig{})[1:]; !reflect.DeepEqual(got, []string{"--no-huge"}) {
		t.Errorf("EALArgs(zero) = %q, want [--no-huge]", got)
	}
	if got := EALArgs(EALConfig{Hugepages: true, MainLcore: 0})[1:]; len(got) != 0 {
		t.Errorf("EALArgs(hugepages) = %q, want nothing", got)
	}
	if got := EALArgs(EALConfig{Hugepages: true, InMemory: true})[1:]; !reflect.DeepEqual(got, []string{"--in-memory"}) {
		t.Errorf("EALArgs(hugepages, in-memory) = %q, want [--in-memory]", got)
	}
}

func TestHugepagesFreeParse(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	os.WriteFile(p, []byte("MemTotal:  24000000 kB\nHugePages_Total:     256\nHugePages_Free:      200\nHugepagesize:       2048 kB\n"), 0o644)
	if n, err := hugepagesFree(p); err != nil || n != 200 {
		t.Errorf("hugepagesFree = %d, %v; want 200, nil", n, err)
	}
	os.WriteFile(p, []byte("MemTotal:  24000000 kB\n"), 0o644)
	if _, err := hugepagesFree(p); err == nil {
		t.Errorf("hugepagesFree without the line: no error")
	}
	n, err := HugepagesFree()
	if err != nil {
		t.Fatalf("HugepagesFree: %v", err)
	}
	t.Logf("HugePages_Free here: %d", n)
}
