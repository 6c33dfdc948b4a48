package chaos

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// The checks of the cluster's clustered services: owners, runners and
// fencing.

// checkOwners: after settling, each service of the active configuration
// has one live owner; while the campaign ran, tokens never went back and
// no service went without a working owner for longer than the failover
// bound, except while PostgreSQL was down or recovering.
func checkOwners(h *History) []Violation {
	var out []Violation
	if len(h.Applies) > 0 {
		final := map[string]Service{}
		for _, s := range h.Final.Services {
			final[s.Name] = s
		}
		for _, name := range h.Applies[len(h.Applies)-1].Services {
			s, ok := final[name]
			switch {
			case !ok || s.Retired:
				out = append(out, Violation{InvOneOwner, h.Settled, fmt.Sprintf("service %s is missing or retired", name)})
			case s.Owner == "" || s.OwnerState != "alive":
				out = append(out, Violation{InvOneOwner, h.Settled, fmt.Sprintf(
					"service %s is owned by %q (%s) after the cluster settled", name, s.Owner, s.OwnerState)})
			}
		}
	}

	samples := slices.Clone(h.Samples)
	sort.SliceStable(samples, func(i, j int) bool { return samples[i].At.Before(samples[j].At) })
	token := map[string]int64{}
	badSince := map[string]time.Time{}
	for _, s := range samples {
		seen := map[string]bool{}
		for _, sv := range s.Services {
			seen[sv.Name] = true
			if sv.Token < token[sv.Name] {
				out = append(out, Violation{InvOneOwner, s.At, fmt.Sprintf(
					"service %s's token went back from %d to %d (as %s showed it)", sv.Name, token[sv.Name], sv.Token, s.Via)})
			}
			token[sv.Name] = max(token[sv.Name], sv.Token)
			working := sv.Owner != "" && slices.Contains(s.Live, sv.Owner) && !h.masterFaulted(sv.Owner, s.At)
			out = append(out, h.ownerGap(sv.Name, badSince, working, s.At)...)
		}
		for _, name := range campaignServices {
			if !seen[name] {
				out = append(out, h.ownerGap(name, badSince, false, s.At)...)
			}
		}
	}
	return out
}

// ownerGap tracks how long service has lacked a working owner and returns
// a violation the first time a gap outlasts the failover bound.
func (h *History) ownerGap(service string, badSince map[string]time.Time, working bool, at time.Time) []Violation {
	if working {
		delete(badSince, service)
		return nil
	}
	since, ok := badSince[service]
	if !ok {
		badSince[service] = at
		return nil
	}
	if since.IsZero() || at.Sub(since) <= h.Bounds.Failover || h.postgresDisturbed(since, at) {
		return nil
	}
	badSince[service] = time.Time{} // reported once per gap
	return []Violation{{InvOneOwner, at, fmt.Sprintf("service %s had no working owner from %s to %s (%s; the bound is %s)",
		service, h.clock(since), h.clock(at), at.Sub(since).Round(time.Millisecond), h.Bounds.Failover)}}
}

// masterFaulted reports whether a fault was acting on the named master at
// time at.
func (h *History) masterFaulted(master string, at time.Time) bool {
	for _, f := range h.Faults {
		if f.Kind.onMaster() && f.Target == master && !at.Before(f.Start) && (f.End.IsZero() || at.Before(f.End)) {
			return true
		}
	}
	return false
}

// postgresDisturbed reports whether PostgreSQL was down, or recovering
// within the recovery allowance, at any time between from and to.
func (h *History) postgresDisturbed(from, to time.Time) bool {
	for _, f := range h.Faults {
		if f.Kind != PostgresRestart {
			continue
		}
		end := f.End
		if end.IsZero() {
			end = h.Healed
		}
		if f.Start.Before(to) && end.Add(h.Bounds.Recovery).After(from) {
			return true
		}
	}
	return false
}

// checkFencedRows: the database holds no row that a service wrote under
// a token older than the newest token granted for that service at the
// time of the write, nor one written under a token that was never granted
// to a master. Both times are the database's, each read in its own
// transaction after the service's row lock was taken (see
// internal/store/fencing.go), so an accepted write that committed before
// a grant is dated before it; a tie proves nothing either way and passes.
func checkFencedRows(h *History) []Violation {
	grants := map[string]map[int64]Grant{}
	for _, g := range h.Final.Grants {
		if grants[g.Service] == nil {
			grants[g.Service] = map[int64]Grant{}
		}
		grants[g.Service][g.Token] = g
	}
	var out []Violation
	for _, r := range h.Final.Fenced {
		own, ok := grants[r.Service][r.Token]
		switch {
		case !ok:
			out = append(out, Violation{InvFencing, r.At, fmt.Sprintf(
				"%s was written under %s@%d, a token never granted", r.Row, r.Service, r.Token)})
		case own.Master == "":
			out = append(out, Violation{InvFencing, r.At, fmt.Sprintf(
				"%s was written under %s@%d, the token that took the service from its owner",
				r.Row, r.Service, r.Token)})
		case r.At.Before(own.At):
			out = append(out, Violation{InvFencing, r.At, fmt.Sprintf(
				"%s was written under %s@%d at %s, before that token was granted at %s",
				r.Row, r.Service, r.Token, h.clock(r.At), h.clock(own.At))})
		}
		var newer *Grant
		for _, g := range grants[r.Service] {
			if g.Token > r.Token && g.At.Before(r.At) && (newer == nil || g.Token > newer.Token) {
				newer = &g
			}
		}
		if newer != nil {
			to := newer.Master
			if to == "" {
				to = "nobody"
			}
			out = append(out, Violation{InvFencing, r.At, fmt.Sprintf(
				"%s was written under %s@%d at %s, after token %d was granted to %s at %s",
				r.Row, r.Service, r.Token, h.clock(r.At), newer.Token, to, h.clock(newer.At))})
		}
	}
	return out
}

// checkFencing: no master's log shows a durable write of a service made
// with a token after another master had started the same service with a
// newer one. This is the masters' own account, beside the database's
// (checkFencedRows): a write is logged right after it commits, and the
// fence holds the service's row lock until then, so an accepted write
// always precedes the next owner's start. A fault on the writer (pause,
// cut or slowed link) may delay its log line; a write logged after such a
// fault is dated from the fault's start.
func checkFencing(h *History) []Violation {
	const grace = time.Second
	var out []Violation
	started := map[string][]LogLine{}
	for _, l := range h.Services {
		if l.Msg == "service started" {
			started[l.Service] = append(started[l.Service], l)
		}
	}
	for _, s := range started {
		sort.SliceStable(s, func(i, j int) bool { return s[i].At.Before(s[j].At) })
	}
	tokens := map[string]int64{} // token of the service each process runs, by process/service
	lines := slices.Clone(h.Services)
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].At.Before(lines[j].At) })
	for _, l := range lines {
		k := l.Process + "/" + l.Service
		switch {
		case l.Msg == "service started":
			tokens[k] = l.Token
		case l.Msg == "service stopped":
			delete(tokens, k)
		case l.Write:
			tok, ok := tokens[k]
			if !ok {
				out = append(out, Violation{InvFencing, l.At, fmt.Sprintf(
					"%s wrote for %s while not running it", l.Process, l.Service)})
				continue
			}
			for _, s := range started[l.Service] {
				if s.Token <= tok {
					continue
				}
				if earliest := h.earliestCommit(l); earliest.After(s.At.Add(grace)) {
					out = append(out, Violation{InvFencing, l.At, fmt.Sprintf(
						"%s wrote for %s with token %d at %s, after %s had started it with token %d at %s",
						l.Process, l.Service, tok, h.clock(l.At), s.Process, s.Token, h.clock(s.At))})
				}
				break
			}
		}
	}
	return out
}

// earliestCommit is the earliest time at which the write logged by l
// may have committed: the log time, or the start of a fault on its
// master that ended shortly before the line was logged.
func (h *History) earliestCommit(l LogLine) time.Time {
	master, _, _ := strings.Cut(l.Process, "-")
	at := l.At
	for _, f := range h.Faults {
		if !f.Kind.onMaster() || f.Target != master || f.Start.After(l.At) {
			continue
		}
		if f.End.IsZero() || !f.End.Before(l.At.Add(-2*time.Second)) {
			at = minTime(at, f.Start)
		}
	}
	return at
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// serviceSpan is the time one master process ran a clustered service, by
// its log.
type serviceSpan struct {
	process    string
	token      int64
	start, end time.Time
}

// spans returns, by service, when each master process ran it: from its
// "service started" line to its "service stopped" line, or to the
// process's last line if it ended without one.
func (h *History) spans() map[string][]serviceSpan {
	ended := map[string]time.Time{}
	for _, r := range h.Runs {
		ended[r.Process] = r.Ended
	}
	lines := slices.Clone(h.Services)
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].At.Before(lines[j].At) })
	open := map[[2]string]serviceSpan{}
	out := map[string][]serviceSpan{}
	for _, l := range lines {
		k := [2]string{l.Process, l.Service}
		switch l.Msg {
		case "service started":
			open[k] = serviceSpan{process: l.Process, token: l.Token, start: l.At}
		case "service stopped":
			if sp, ok := open[k]; ok {
				sp.end = l.At
				out[l.Service] = append(out[l.Service], sp)
				delete(open, k)
			}
		}
	}
	for k, sp := range open {
		sp.end = ended[k[0]]
		if sp.end.IsZero() {
			sp.end = h.Settled
		}
		out[k[1]] = append(out[k[1]], sp)
	}
	for _, s := range out {
		sort.Slice(s, func(i, j int) bool { return s[i].start.Before(s[j].start) })
	}
	return out
}

// checkRunners: two master processes never ran one service at once for
// longer than the failover bound, counted from when the newer one
// started or, if the older one's master was under a fault then, from the
// end of that fault (a paused master can only stop once it runs again).
func checkRunners(h *History) []Violation {
	var out []Violation
	for service, spans := range h.spans() {
		for j, b := range spans {
			for _, a := range spans[:j] {
				if a.process == b.process || !b.start.Before(a.end) {
					continue
				}
				allowed := b.start
				master, _, _ := strings.Cut(a.process, "-")
				for _, f := range h.Faults {
					if f.Kind.onMaster() && f.Target == master && f.Start.Before(a.end) && !f.End.Before(b.start) {
						allowed = maxTime(allowed, f.End)
					}
				}
				if a.end.Sub(allowed) > h.Bounds.Failover && !h.postgresDisturbed(b.start, a.end) {
					out = append(out, Violation{InvOneOwner, a.end, fmt.Sprintf(
						"%s ran %s with token %d until %s, while %s ran it with token %d from %s",
						a.process, service, a.token, h.clock(a.end), b.process, b.token, h.clock(b.start))})
				}
			}
		}
	}
	return out
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
