package dpdk

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// EALConfig describes the EAL command line. The zero value means: DPDK's
// default lcores (every CPU), no memory limit, --no-huge.
type EALConfig struct {
	// Lcores is the --lcores value. "0@(0-1),1@(0-1)" makes lcores 0 and
	// 1, each allowed to run on CPUs 0-1 (the threads float instead of
	// being pinned). Empty leaves the EAL default (one lcore per CPU).
	Lcores string
	// MainLcore is --main-lcore. 0 leaves DPDK's default, which is the
	// lowest lcore in Lcores (lcore 0 for the usual "0@...,1@..." list);
	// the flag is passed only when MainLcore is not 0.
	MainLcore int
	// MemoryMB is -m (preallocated memory, MB); 0 omits it.
	MemoryMB int
	// Hugepages false adds --no-huge (plain anonymous memory; works
	// anywhere, about half the speed).
	Hugepages bool
	// InMemory adds --in-memory: no hugepage files nor shared config left
	// behind, several processes can coexist. DPDK 22.11 rejects
	// --in-memory with --no-huge (--no-huge implies --legacy-mem, which
	// is "not compatible with --in-memory"), so without Hugepages it
	// becomes --no-shconf, which gives the same property there (--no-huge
	// memory is anonymous: no files).
	InMemory bool
	// FilePrefix is --file-prefix when not empty.
	FilePrefix string
	// NoPCI adds --no-pci (no PCI scan).
	NoPCI bool
	// Vdevs each become --vdev (probed by the EAL at init; OpenPort on the
	// same name adopts the port).
	Vdevs []string
	// LogLevel is --log-level, e.g. "error", "notice" or "pmd.net.tap:debug".
	LogLevel string
	// Extra arguments are appended as they are.
	Extra []string
}

// EALArgs returns the argv InitEAL passes to rte_eal_init, argv[0] included.
func EALArgs(cfg EALConfig) []string {
	prog := "shoal"
	if len(os.Args) > 0 && os.Args[0] != "" {
		prog = filepath.Base(os.Args[0])
	}
	a := []string{prog}
	if cfg.Lcores != "" {
		a = append(a, "--lcores", cfg.Lcores)
	}
	if cfg.MainLcore != 0 {
		a = append(a, "--main-lcore", strconv.Itoa(cfg.MainLcore))
	}
	if cfg.MemoryMB > 0 {
		a = append(a, "-m", strconv.Itoa(cfg.MemoryMB))
	}
	if !cfg.Hugepages {
		a = append(a, "--no-huge")
	}
	if cfg.InMemory {
		if cfg.Hugepages {
			a = append(a, "--in-memory")
		} else {
			a = append(a, "--no-shconf")
		}
	}
	if cfg.FilePrefix != "" {
		a = append(a, "--file-prefix", cfg.FilePrefix)
	}
	if cfg.NoPCI {
		a = append(a, "--no-pci")
	}
	for _, v := range cfg.Vdevs {
		a = append(a, "--vdev", v)
	}
	if cfg.LogLevel != "" {
		a = append(a, "--log-level", cfg.LogLevel)
	}
	return append(a, cfg.Extra...)
}

// HugepagesFree returns HugePages_Free from /proc/meminfo: free hugepages
// of the default size (2 MiB here). It needs no EAL.
func HugepagesFree() (int, error) {
	return hugepagesFree("/proc/meminfo")
}

func hugepagesFree(path string) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != "HugePages_Free" {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, fmt.Errorf("%s: HugePages_Free: %w", path, err)
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New(path + ": no HugePages_Free line")
}
