package backupset

import (
	"strings"
	"testing"
)

func TestTargetSettings(t *testing.T) {
	for _, tc := range []struct {
		target Target
		want   string // joined lines, or "error"
	}{
		{Target{}, ""},
		{Target{Time: "2026-11-24 07:30:00+00"}, "recovery_target_time = '2026-11-24 07:30:00+00'|recovery_target_action = 'promote'"},
		{Target{Time: "2026-11-24T09:30:00.5+02:00"}, "recovery_target_time = '2026-11-24 07:30:00.5+00'|recovery_target_action = 'promote'"},
		{Target{LSN: "16/B374D848", Action: "pause"}, "recovery_target_lsn = '16/B374D848'|recovery_target_action = 'pause'"},
		{Target{XID: "12345", Timeline: "current"}, "recovery_target_xid = '12345'|recovery_target_action = 'promote'|recovery_target_timeline = 'current'"},
		{Target{Name: "before_it's_done"}, "recovery_target_name = 'before_it''s_done'|recovery_target_action = 'promote'"},
		{Target{Time: "2026-11-24 07:30:00"}, "error"}, // no zone
		{Target{Time: "yesterday"}, "error"},
		{Target{LSN: "nope"}, "error"},
		{Target{XID: "-1"}, "error"},
		{Target{Name: strings.Repeat("x", 64)}, "error"},
		{Target{Time: "2026-11-24 07:30:00+00", LSN: "0/1"}, "error"},
		{Target{Action: "explode", LSN: "0/1"}, "error"},
		{Target{Timeline: "0"}, "error"},
	} {
		lines, err := tc.target.Settings()
		got := strings.Join(lines, "|")
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("%+v:\n got %s\nwant %s (err %v)", tc.target, got, tc.want, err)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/usr/local/bin/walfetch":            "/usr/local/bin/walfetch",
		"http://h:7480":                      "http://h:7480",
		"s3://b/p?endpoint=h:9000&tls=false": "'s3://b/p?endpoint=h:9000&tls=false'",
		"it's":                               `'it'\''s'`,
		"":                                   "''",
	} {
		if got := ShellQuote(in); got != want {
			t.Errorf("ShellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}
