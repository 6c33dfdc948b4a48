package main

import (
	"flag"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"
)

// The checks refuse only what is wrong: the values a master is commonly
// started with pass, and are read as meant.
func TestMasterFlagsAcceptGoodValues(t *testing.T) {
	t.Parallel()
	cases := []struct {
		flags masterFlags
		want  masterSettings
	}{
		{masterFlags{listen: "127.0.0.1:8010", roles: "web,dispatch,services", level: "info"},
			masterSettings{roles: []string{"web", "dispatch", "services"}, level: slog.LevelInfo}},
		{masterFlags{name: "m-1.eu_west", listen: "[::1]:0", roles: " services , web", tags: "eu, gpu",
			level: "DEBUG", ttl: time.Second, workerTTL: time.Second},
			masterSettings{roles: []string{"services", "web"}, tags: []string{"eu", "gpu"}, level: slog.LevelDebug}},
		{masterFlags{name: "m2", listen: ":65535", roles: "dispatch", level: "error", tags: " "},
			masterSettings{roles: []string{"dispatch"}, level: slog.LevelError}},
	}
	for _, tc := range cases {
		if tc.flags.ttl == 0 {
			tc.flags.ttl, tc.flags.workerTTL = 10*time.Second, 30*time.Second
		}
		fs := flag.NewFlagSet("regent master", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		got, code, ok := masterOptions(fs, tc.flags)
		if !ok {
			t.Errorf("%+v refused with exit %d", tc.flags, code)
			continue
		}
		if !slices.Equal(got.roles, tc.want.roles) || !slices.Equal(got.tags, tc.want.tags) || got.level != tc.want.level {
			t.Errorf("%+v read as %+v, want %+v", tc.flags, got, tc.want)
		}
	}
}
