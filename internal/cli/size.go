package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseSize parses a byte count with an optional KiB, MiB, GiB or TiB
// suffix ("256MiB", "1GiB", "0").
func ParseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size (want e.g. 512MiB or 2GiB)", s)
	}
	return n * mult, nil
}

// ParseDuration is time.ParseDuration plus days and weeks ("14d", "2w",
// "1w3d12h"), the units retention is usually thought in.
func ParseDuration(s string) (time.Duration, error) {
	var total time.Duration
	rest := strings.TrimSpace(s)
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		if i := strings.Index(rest, u.suffix); i > 0 {
			n, err := strconv.Atoi(rest[:i])
			if err != nil || n < 0 {
				return 0, fmt.Errorf("%q is not a duration (want e.g. 36h, 14d or 2w)", s)
			}
			total += time.Duration(n) * u.d
			rest = rest[i+1:]
		}
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil || d < 0 {
			return 0, fmt.Errorf("%q is not a duration (want e.g. 36h, 14d or 2w)", s)
		}
		total += d
	}
	return total, nil
}
