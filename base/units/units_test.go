package units

import (
	"testing"
	"time"
)

func TestSizesAndDurations(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "512": 512, "256MiB": 256 << 20, "2GiB": 2 << 30, "64 KiB": 64 << 10} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "-1", "lots", "1PB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	for in, want := range map[string]time.Duration{"36h": 36 * time.Hour, "14d": 14 * 24 * time.Hour, "2w": 14 * 24 * time.Hour, "1w3d12h": 10*24*time.Hour + 12*time.Hour} {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"soon", "-3d", "1y"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) accepted", bad)
		}
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{42 * time.Second: "42s", 5 * time.Minute: "5m", 90 * time.Minute: "1.5h", 72 * time.Hour: "3.0d"} {
		if got := Age(d); got != want {
			t.Errorf("Age(%s) = %s, want %s", d, got, want)
		}
	}
}
