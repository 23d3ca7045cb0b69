package deploy

import (
	"bufio"
	"strings"
)

// UnitFile is the systemd unit's path inside this package.
const UnitFile = "systemd/shoal@.service"

// Unit returns the systemd unit as it is shipped.
func Unit() ([]byte, error) { return files.ReadFile(UnitFile) }

// UnitSettings returns every Key=Value of the unit, in order per key
// (keys like DeviceAllow repeat).
func UnitSettings() (map[string][]string, error) {
	raw, err := Unit()
	if err != nil {
		return nil, err
	}
	out := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(string(raw)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			out[strings.TrimSpace(k)] = append(out[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return out, sc.Err()
}

// UnitCapabilities lists the unit's CapabilityBoundingSet ("CAP_NET_ADMIN",
// ...): all the privilege a node keeps.
func UnitCapabilities() ([]string, error) {
	s, err := UnitSettings()
	if err != nil {
		return nil, err
	}
	var caps []string
	for _, v := range s["CapabilityBoundingSet"] {
		caps = append(caps, strings.Fields(v)...)
	}
	return caps, nil
}
