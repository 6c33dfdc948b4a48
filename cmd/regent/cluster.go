package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/regent-ci/regent/internal/store"
)

const clusterUsage = `Usage: regent cluster COMMAND [flags]

Commands:
  status   show the masters and clustered services of the cluster on a
           database (--db DB)

Run 'regent cluster COMMAND --help' for a command's flags.
`

func runCluster(ctx context.Context, args []string) int {
	_, args, code, ok := subcommand(os.Stderr, "regent cluster", clusterUsage, args, "status")
	if !ok {
		return code
	}
	fs := flag.NewFlagSet("regent cluster status", flag.ContinueOnError)
	db := fs.String("db", "", "database: a SQLite file path or a postgres:// URL (required)")
	all := fs.Bool("all", false, "also show ended incarnations and retired services")
	asJSON := fs.Bool("json", false, "print JSON instead of tables")
	if code, ok := parse(fs, args); !ok {
		return code
	}
	if code, ok := noArgs(fs); !ok {
		return code
	}
	if *db == "" {
		code, _ := usageError(fs, "--db is required")
		return code
	}
	s, err := store.Open(ctx, *db, store.ExistingOnly())
	if err != nil {
		return missingDatabase(*db, err)
	}
	defer s.Close()
	masters, err := s.Masters(ctx, *all)
	if err != nil {
		return fail("%v", err)
	}
	services, err := s.Services(ctx, *all)
	if err != nil {
		return fail("%v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"masters": masters, "services": services}); err != nil {
			return fail("%v", err)
		}
		return 0
	}
	now, err := s.Now(ctx)
	if err != nil {
		return fail("%v", err)
	}
	printMasters(os.Stdout, masters, now)
	fmt.Println()
	printServices(os.Stdout, services, now)
	printWarnings(os.Stdout, masters, services)
	return 0
}

// printMasters writes the incarnations as a table.
func printMasters(w io.Writer, masters []store.Master, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MASTER\tINCARNATION\tSTATE\tROLES\tTAGS\tHOST\tLAST SEEN\tSUPERVISOR\tSERVICES\tVERSION")
	for _, m := range masters {
		state := m.State
		if m.Reason != "" && m.Reason != m.State && !m.Live() {
			state += " (" + m.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", m.Name, m.ID, state,
			dashList(m.Roles), dashList(m.Tags), m.Host, agoText(now, &m.LastSeen), dashYes(m.Supervisor),
			m.Services, m.Version)
	}
	tw.Flush()
}

// printServices writes the clustered services as a table.
func printServices(w io.Writer, services []store.Service, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tKIND\tOWNER\tTOKEN\tOWNED SINCE\tLAST SUCCESS\tLAST ERROR")
	for _, sv := range services {
		owner := "-"
		if sv.Owner != nil {
			owner = *sv.Owner
		}
		if sv.State == store.ServiceRetired {
			owner = "(retired)"
		}
		lastErr := "-"
		if sv.LastError != "" {
			lastErr = fmt.Sprintf("%s: %s", agoText(now, sv.LastErrorAt), firstLineOf(sv.LastError))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", sv.Name, sv.Kind, owner, sv.Token,
			agoText(now, sv.OwnedSince), agoText(now, sv.LastSuccess), lastErr)
	}
	tw.Flush()
}

// printWarnings points out what an operator should look at: services
// without an owner and masters offering different configuration sources.
func printWarnings(w io.Writer, masters []store.Master, services []store.Service) {
	var unowned []string
	for _, sv := range services {
		if sv.State == store.ServiceActive && sv.Owner == nil {
			unowned = append(unowned, sv.Name)
		}
	}
	if len(unowned) > 0 {
		fmt.Fprintf(w, "\nwarning: no live master owns %s; check the tags they are pinned to "+
			"and the masters with the services role\n", strings.Join(unowned, ", "))
	}
	sources := map[string][]string{}
	for _, m := range masters {
		if m.Live() && m.ConfigSource != "" {
			sources[m.ConfigSource] = append(sources[m.ConfigSource], m.Name)
		}
	}
	if len(sources) > 1 {
		fmt.Fprintln(w, "\nwarning: masters offer different configuration sources:")
		for src, names := range sources {
			fmt.Fprintf(w, "  %s: %s\n", src, strings.Join(names, ", "))
		}
	}
}

func agoText(now time.Time, t *time.Time) string {
	if t == nil || t.IsZero() {
		return "-"
	}
	d := now.Sub(*t)
	if d < 0 {
		d = 0
	}
	return d.Round(100*time.Millisecond).String() + " ago"
}

func dashList(xs []string) string {
	if len(xs) == 0 {
		return "-"
	}
	return strings.Join(xs, ",")
}

func dashYes(b bool) string {
	if b {
		return "yes"
	}
	return "-"
}

// firstLineOf returns the first line of s, cut to 80 characters: enough
// to recognise an error; the API has the whole of it.
func firstLineOf(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	if r := []rune(line); len(r) > 80 {
		line = string(r[:79]) + "…"
	}
	return line
}
