package chaos

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// t0 is the start of every synthetic history.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// sec is a number of seconds as a duration, for short literals.
func sec(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// validHistory is a small campaign that keeps every invariant: a forced
// build, a lost build retried, two builds taking turns at the lock, a
// push recorded and built, services owned all along, one master's lists
// right, and a poller that wrote with its token.
func validHistory() *History {
	services := func(owner string, token int64) []ServiceSample {
		var out []ServiceSample
		for _, s := range campaignServices {
			out = append(out, ServiceSample{Name: s, Owner: owner, Token: token})
		}
		return out
	}
	marks := func(build int64, builder string, number int64, step string, from, to float64, lock string) []Marker {
		out := []Marker{{Build: build, Builder: builder, Number: number, Step: step, Phase: "start", At: at(sec(from)), Lock: lock}}
		if to > 0 {
			out = append(out, Marker{Build: build, Builder: builder, Number: number, Step: step, Phase: "end",
				At: at(sec(to)), Lock: lock})
		}
		return out
	}
	h := &History{
		Seed: 7, Duration: time.Minute, Started: t0, Healed: at(sec(60)), Settled: at(sec(70)),
		Bounds:  Bounds{Propagation: 3 * time.Second, Failover: 10 * time.Second, Recovery: 14 * time.Second},
		Applies: []Apply{{Started: t0, At: t0, Via: "database", Builders: []string{"a", "b", "lk"}, Workers: []string{"w1"}, Services: campaignServices}},
		Forces:  []Force{{At: at(sec(1)), Via: "m1", Builder: "a", Request: 1}},
		Faults:  []FaultRun{{Kind: WorkerKill, Target: "w1", Start: at(sec(3.2)), End: at(sec(4))}},
		Pushes:  []Push{{At: at(sec(2)), Revision: "r1"}},
		Lists:   []List{{At: at(sec(5)), Answered: at(sec(5.01)), Master: "m1", Builders: []string{"a", "b", "lk"}, Workers: []string{"w1"}}},
		Final: Final{
			Generation: 1, Builders: []string{"a", "b", "lk"}, Workers: []string{"w1"},
			Requests: []Request{
				{ID: 1, Buildset: 1, Builder: "a", State: "complete", Build: 10, At: at(sec(1))},
				{ID: 2, Buildset: 2, Builder: "a", State: "complete", Build: 12, RetryOf: 11, At: at(sec(3))},
				{ID: 3, Buildset: 3, Builder: "lk", State: "complete", Build: 13, At: at(sec(4))},
				{ID: 4, Buildset: 4, Builder: "lk", State: "complete", Build: 14, At: at(sec(4))},
				{ID: 5, Buildset: 5, Builder: "b", State: "cancelled", Reason: "cancelled by chaos", At: at(sec(5))},
			},
			Builds: []Build{
				{ID: 10, Builder: "a", Number: 1, Request: 1, State: "finished", Result: "success", CreatedAt: at(sec(1))},
				{ID: 11, Builder: "a", Number: 2, Request: 2, State: "finished", Result: "retry", Reason: "worker lost", Steps: 1,
					Worker: "w1", CreatedAt: at(sec(3)), FinishedAt: at(sec(8.9))},
				{ID: 12, Builder: "a", Number: 3, Request: 2, State: "finished", Result: "success", RetryOf: 11, CreatedAt: at(sec(9))},
				{ID: 13, Builder: "lk", Number: 1, Request: 3, State: "finished", Result: "success", CreatedAt: at(sec(4))},
				{ID: 14, Builder: "lk", Number: 2, Request: 4, State: "finished", Result: "success", CreatedAt: at(sec(4))},
			},
			Changes:   []Change{{ID: 1, Repository: "app", Branch: "main", Revision: "r1"}},
			Buildsets: []Buildset{{ID: 1, Scheduler: "force"}, {ID: 2, Scheduler: "on-main", Change: 1}, {ID: 6, Scheduler: "tick", Reason: "due at 1"}, {ID: 7, Scheduler: "tick", Reason: "due at 2"}},
			Masters:   []Master{{ID: 1, Name: "m1", State: "alive"}, {ID: 2, Name: "m2", State: "alive"}},
		},
		Services: []LogLine{
			{At: at(0), Process: "m1-run1", Msg: "service started", Service: "poller:app", Token: 1},
			{At: at(sec(2.5)), Process: "m1-run1", Msg: "recorded branch heads", Service: "poller:app", Write: true},
		},
	}
	for _, s := range campaignServices {
		h.Final.Services = append(h.Final.Services, Service{Name: s, State: "active", Owner: "m1", OwnerState: "alive", Token: 1})
		h.Final.Grants = append(h.Final.Grants, Grant{Service: s, Token: 1, Master: "m1", At: t0})
	}
	h.Final.Fenced = []FencedRow{
		{Row: "change 1", Service: "poller:app", Token: 1, At: at(sec(2.5))},
		{Row: "buildset 6", Service: "scheduler:tick", Token: 1, At: at(sec(10))},
		{Row: "scheduler state tick/", Service: "scheduler:tick", Token: 1, At: at(sec(20))},
	}
	for i := 1; i <= 20; i++ {
		h.Samples = append(h.Samples, Sample{At: at(sec(float64(i))), Via: "m2", Live: []string{"m1", "m2"}, Services: services("m1", 1)})
	}
	for _, m := range [][]Marker{
		marks(10, "a", 1, "s1", 1.1, 1.2, ""), marks(10, "a", 1, "s2", 1.2, 1.4, ""),
		marks(11, "a", 2, "s1", 3.1, 0, ""),
		marks(12, "a", 3, "s1", 9.1, 9.2, ""),
		marks(13, "lk", 1, "hold", 4.1, 4.4, lockName),
		marks(14, "lk", 2, "hold", 4.5, 4.8, lockName),
	} {
		h.Markers = append(h.Markers, m...)
	}
	return h
}

func TestCheckAcceptsAValidHistory(t *testing.T) {
	if vs := Check(validHistory()); len(vs) != 0 {
		t.Fatalf("violations in a valid history:\n%s", Report(validHistory(), vs))
	}
}

// Must-show 2: for each invariant, a history broken on purpose is caught.
func TestCheckCatchesBrokenHistories(t *testing.T) {
	cases := []struct {
		name    string
		want    string // the invariant
		text    string // a piece of the message
		corrupt func(h *History)
	}{
		{"a step ran twice for one attempt", InvAttemptOnce, "ran twice", func(h *History) {
			h.Markers = append(h.Markers, Marker{Build: 10, Builder: "a", Number: 1, Step: "s1", Phase: "start", At: at(sec(1.5))})
		}},
		{"a step ran for a build the database lacks", InvAttemptOnce, "does not hold", func(h *History) {
			h.Markers = append(h.Markers, Marker{Build: 99, Builder: "a", Number: 9, Step: "s1", Phase: "start", At: at(sec(6))})
		}},
		{"a marker's number disagrees with the database", InvAttemptOnce, "is number", func(h *History) {
			h.Markers[0].Number = 5
		}},
		{"a build succeeded without running", InvAttemptOnce, "without running a step", func(h *History) {
			h.Markers = slices.DeleteFunc(h.Markers, func(m Marker) bool { return m.Build == 10 })
		}},
		{"a build succeeded with a step cut short", InvAttemptOnce, "never finished", func(h *History) {
			h.Markers = slices.DeleteFunc(h.Markers, func(m Marker) bool { return m.Build == 12 && m.Phase == "end" })
		}},
		{"one request ran as two builds", InvAttemptOnce, "ran as builds", func(h *History) {
			h.Final.Builds = append(h.Final.Builds, Build{ID: 15, Builder: "a", Number: 4, Request: 1,
				State: "finished", Result: "success", CreatedAt: at(sec(2))})
			h.Markers = append(h.Markers, Marker{Build: 15, Builder: "a", Number: 4, Step: "s1", Phase: "start", At: at(sec(2))},
				Marker{Build: 15, Builder: "a", Number: 4, Step: "s1", Phase: "end", At: at(sec(2.1))})
		}},
		{"a build that finished was retried", InvAttemptOnce, "yet was retried", func(h *History) {
			h.Final.Builds[1].Result = "failure"
		}},
		{"a request left pending", InvNoLostWork, "still pending", func(h *History) {
			h.Final.Requests[0].State = "pending"
		}},
		{"a request cancelled without a reason", InvNoLostWork, "without a reason", func(h *History) {
			h.Final.Requests[4].Reason = ""
		}},
		{"a request complete without a build", InvNoLostWork, "without a build", func(h *History) {
			h.Final.Requests[0].Build = 77
		}},
		{"a lost build never retried", InvNoLostWork, "want 1", func(h *History) {
			h.Final.Builds[2].RetryOf = 0
		}},
		{"a build still running", InvNoLostWork, "still running", func(h *History) {
			h.Final.Builds[0].State = "running"
		}},
		{"an acknowledged force is missing", InvNoLostWork, "not in the database", func(h *History) {
			h.Forces = append(h.Forces, Force{At: at(sec(7)), Via: "m2", Builder: "b", Request: 42})
		}},
		{"a change recorded twice", InvChangeOnce, "more than once", func(h *History) {
			h.Final.Changes = append(h.Final.Changes, Change{ID: 2, Repository: "app", Branch: "main", Revision: "r1"})
		}},
		{"a push never recorded", InvChangeOnce, "never recorded", func(h *History) {
			h.Pushes = append(h.Pushes, Push{At: at(sec(8)), Revision: "r2"})
		}},
		{"a change built twice by one scheduler", InvChangeOnce, "for one change", func(h *History) {
			h.Final.Buildsets = append(h.Final.Buildsets, Buildset{ID: 8, Scheduler: "on-main", Change: 1})
		}},
		{"a timed scheduler ran twice for one due time", InvChangeOnce, "due at 2", func(h *History) {
			h.Final.Buildsets = append(h.Final.Buildsets, Buildset{ID: 9, Scheduler: "tick", Reason: "due at 2"})
		}},
		{"a master lists a retired builder", InvNoStale, "should not be active", func(h *History) {
			h.Lists[0].Builders = []string{"a", "b", "lk", "old"}
		}},
		{"a master misses a worker", InvNoStale, "without [w1]", func(h *History) {
			h.Lists[0].Workers = nil
		}},
		{"the database keeps a retired worker active", InvNoStale, "active workers", func(h *History) {
			h.Final.Workers = []string{"w1", "w9"}
		}},
		{"a service owned by a dead master at the end", InvOneOwner, "after the cluster settled", func(h *History) {
			h.Final.Services[1].OwnerState = "dead"
		}},
		{"a service missing at the end", InvOneOwner, "missing or retired", func(h *History) {
			h.Final.Services = h.Final.Services[:2]
		}},
		{"a token went back", InvOneOwner, "went back", func(h *History) {
			h.Samples[10].Services[1].Token = 5
			h.Samples[11].Services[1].Token = 4
		}},
		{"a service without an owner past the bound", InvOneOwner, "no working owner", func(h *History) {
			for i := range h.Samples {
				h.Samples[i].Services[1].Owner = ""
			}
		}},
		{"a service owned by a master that is not live", InvOneOwner, "no working owner", func(h *History) {
			for i := range h.Samples {
				h.Samples[i].Live = []string{"m2"}
			}
		}},
		{"a service owned by a paused master past the bound", InvOneOwner, "no working owner", func(h *History) {
			h.Faults = append(h.Faults, FaultRun{Kind: MasterPause, Target: "m1", Start: at(sec(2)), End: at(sec(19))})
		}},
		{"a replaced owner's write accepted", InvFencing, "after m2-run1 had started it", func(h *History) {
			h.Services = append(h.Services,
				LogLine{At: at(sec(3)), Process: "m2-run1", Msg: "service started", Service: "poller:app", Token: 2},
				LogLine{At: at(sec(6)), Process: "m1-run1", Msg: "recorded branch heads", Service: "poller:app", Write: true})
		}},
		{"a row written under a superseded token", InvFencing, "after token 2 was granted to m2", func(h *History) {
			h.Final.Grants = append(h.Final.Grants, Grant{Service: "poller:app", Token: 2, Master: "m2", At: at(sec(2))})
		}},
		{"a row written after its service was released", InvFencing, "granted to nobody", func(h *History) {
			h.Final.Grants = append(h.Final.Grants, Grant{Service: "scheduler:tick", Token: 2, At: at(sec(15))})
		}},
		{"a row written under a token never granted", InvFencing, "a token never granted", func(h *History) {
			h.Final.Fenced[1].Token = 9
		}},
		{"a row written under a releasing token", InvFencing, "took the service from its owner", func(h *History) {
			h.Final.Grants = append(h.Final.Grants, Grant{Service: "poller:app", Token: 2, At: at(sec(5))})
			h.Final.Fenced = append(h.Final.Fenced, FencedRow{Row: "change 2", Service: "poller:app", Token: 2, At: at(sec(6))})
		}},
		{"a row written before its token was granted", InvFencing, "before that token was granted", func(h *History) {
			h.Final.Fenced = append(h.Final.Fenced, FencedRow{Row: "change 0", Service: "poller:app", Token: 1, At: at(-sec(1))})
		}},
		{"a write by a master not running the service", InvFencing, "while not running it", func(h *History) {
			h.Services = append(h.Services,
				LogLine{At: at(sec(6)), Process: "m3-run1", Msg: "buildset created", Service: "scheduler:tick", Write: true})
		}},
		{"two builds held the lock at once", InvLockLimit, "took lock excl (max 1 holders)", func(h *History) {
			h.Markers = append(h.Markers,
				Marker{Build: 16, Builder: "lk", Number: 3, Step: "hold", Phase: "start", At: at(sec(4.3)), Lock: lockName},
				Marker{Build: 16, Builder: "lk", Number: 3, Step: "hold", Phase: "end", At: at(sec(4.6)), Lock: lockName})
			h.Final.Builds = append(h.Final.Builds, Build{ID: 16, Builder: "lk", Number: 3, Request: 6,
				State: "finished", Result: "failure", CreatedAt: at(sec(4))})
		}},
		{"two masters ran one service past the bound", InvOneOwner, "while m2-run1 ran it", func(h *History) {
			h.Services = append(h.Services,
				LogLine{At: at(sec(3)), Process: "m2-run1", Msg: "service started", Service: "poller:app", Token: 2})
		}},
		{"a build lost while its worker was fine", InvSurvives, "nothing happened to its worker", func(h *History) {
			h.Faults = nil
		}},
		{"a build lost while one link of its worker was cut", InvSurvives, "nothing happened to its worker", func(h *History) {
			h.Faults = []FaultRun{{Kind: WorkerBlackhole, Target: "w1", Link: "m1", Start: at(sec(3.2)), End: at(sec(8))}}
		}},
		{"a build never received although its path was fine", InvSurvives, "nothing happened to its worker", func(h *History) {
			h.Final.Builds[1].Steps, h.Final.Builds[1].Master = 0, "m2"
			h.Faults = []FaultRun{{Kind: WorkerBlackhole, Target: "w1", Link: "m1", Start: at(sec(2.9)), End: at(sec(8))}}
		}},
		{"a build lost while its worker's links were slow", InvSurvives, "nothing happened to its worker", func(h *History) {
			h.Faults = []FaultRun{{Kind: WorkerDelay, Target: "w1", Link: "all", Start: at(sec(3.2)), End: at(sec(8))}}
		}},
		{"a master that did not stop after SIGTERM", InvCampaign, "did not stop", func(h *History) {
			h.Events = append(h.Events, Event{At: at(sec(30)), Kind: "heal-failed", Target: "m2",
				Detail: "master-term: m2 did not stop within 20s of SIGTERM and was killed"})
		}},
		{"three steps held a counting lock of two", InvLockLimit, "max 2 holders", func(h *History) {
			addPairHolds(h, [][2]float64{{10, 13}, {11, 14}, {12, 15}})
		}},
		{"a lock still held after settling", InvLockLimit, "remain", func(h *History) {
			h.Final.LockHolds = 1
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := validHistory()
			c.corrupt(h)
			vs := Check(h)
			for _, v := range vs {
				if v.Invariant == c.want && strings.Contains(v.Message, c.text) {
					return
				}
			}
			t.Fatalf("no %s violation mentioning %q; got %v", c.want, c.text, vs)
		})
	}
}

// Faults the campaign itself injected excuse what they must, and no more.
func TestCheckExcusesWhatFaultsExplain(t *testing.T) {
	cases := []struct {
		name   string
		modify func(h *History)
	}{
		{"a gap in ownership while PostgreSQL restarts", func(h *History) {
			for i := range h.Samples {
				h.Samples[i].Services[0].Owner = ""
			}
			h.Faults = append(h.Faults, FaultRun{Kind: PostgresRestart, Target: "postgres", Start: at(sec(3)), End: at(sec(5))})
		}},
		{"a gap in ownership within the failover bound", func(h *History) {
			for i := 4; i < 12; i++ {
				h.Samples[i].Services[2].Owner = ""
			}
		}},
		{"a write logged late because its master was paused", func(h *History) {
			h.Faults = append(h.Faults, FaultRun{Kind: MasterPause, Target: "m1", Start: at(sec(2.6)), End: at(sec(8))})
			h.Services = append(h.Services,
				LogLine{At: at(sec(7)), Process: "m2-run1", Msg: "service started", Service: "poller:app", Token: 2},
				LogLine{At: at(sec(8.001)), Process: "m1-run1", Msg: "recorded branch heads", Service: "poller:app", Write: true},
				LogLine{At: at(sec(8.1)), Process: "m1-run1", Msg: "service stopped", Service: "poller:app", Token: 1})
		}},
		{"rows written before the next grant, or at its very instant", func(h *History) {
			h.Final.Grants = append(h.Final.Grants, Grant{Service: "scheduler:tick", Token: 2, Master: "m2", At: at(sec(20))})
		}},
		{"a paused master stopping its service once resumed", func(h *History) {
			h.Faults = append(h.Faults, FaultRun{Kind: MasterPause, Target: "m1", Start: at(sec(3)), End: at(sec(25))})
			h.Services = append(h.Services,
				LogLine{At: at(sec(7)), Process: "m2-run1", Msg: "service started", Service: "poller:app", Token: 2},
				LogLine{At: at(sec(25.5)), Process: "m1-run1", Msg: "service stopped", Service: "poller:app", Token: 1})
			h.Samples = h.Samples[:2] // the samples do not matter here
		}},
		{"a list answered while the next apply was under way", func(h *History) {
			h.Applies = append(h.Applies, Apply{Started: at(sec(5.005)), At: at(sec(5.5)), Builders: []string{"a"},
				Workers: []string{"w1"}, Services: campaignServices})
			h.Lists[0].Builders = []string{"a"}
			h.Final.Builders = []string{"a"}
		}},
		{"a list asked within the propagation bound", func(h *History) {
			h.Applies[0].At = at(sec(3))
			h.Lists[0].Builders = []string{"stale"}
		}},
		{"a periodic build started after the cluster was quiet", func(h *History) {
			h.Quiet = at(sec(65))
			h.Final.Requests = append(h.Final.Requests, Request{ID: 7, Builder: "a", State: "claimed", At: at(sec(66))})
			h.Final.Builds = append(h.Final.Builds, Build{ID: 17, Builder: "a", Number: 4, Request: 7,
				State: "running", CreatedAt: at(sec(66))})
		}},
		{"a build lost while its worker was cut off from every master", func(h *History) {
			h.Faults = []FaultRun{{Kind: WorkerReset, Target: "w1", Link: "all", Start: at(sec(3.2)), End: at(sec(8))}}
		}},
		{"a build never received because its worker's link to its master was cut", func(h *History) {
			h.Final.Builds[1].Steps, h.Final.Builds[1].Master = 0, "m1"
			h.Faults = []FaultRun{{Kind: WorkerBlackhole, Target: "w1", Link: "m1", Start: at(sec(2.9)), End: at(sec(8))}}
		}},
		{"a build lost while its worker was stopping", func(h *History) {
			h.Faults = []FaultRun{{Kind: WorkerTerm, Target: "w1", Start: at(sec(3.2)), End: at(sec(5))}}
		}},
		{"a cut-off worker's step outliving its lost build's lock", func(h *History) {
			h.Final.Builds = append(h.Final.Builds, Build{ID: 16, Builder: "lk", Number: 3, Request: 6,
				State: "finished", Result: "retry", Reason: "worker lost", Worker: "w2", CreatedAt: at(sec(5))})
			h.Final.Requests = append(h.Final.Requests, Request{ID: 6, Builder: "lk", State: "complete", Build: 17})
			h.Final.Builds = append(h.Final.Builds, Build{ID: 17, Builder: "lk", Number: 4, Request: 6,
				State: "finished", Result: "success", RetryOf: 16, CreatedAt: at(sec(5.2))})
			h.Faults = append(h.Faults, FaultRun{Kind: WorkerBlackhole, Target: "w2", Link: "all",
				Start: at(sec(5.05)), End: at(sec(5.3))})
			h.Markers = append(h.Markers,
				Marker{Build: 16, Builder: "lk", Number: 3, Step: "hold", Phase: "start", At: at(sec(5.01)), Lock: lockName},
				Marker{Build: 16, Builder: "lk", Number: 3, Step: "hold", Phase: "end", At: at(sec(5.5)), Lock: lockName},
				Marker{Build: 17, Builder: "lk", Number: 4, Step: "hold", Phase: "start", At: at(sec(5.25)), Lock: lockName},
				Marker{Build: 17, Builder: "lk", Number: 4, Step: "hold", Phase: "end", At: at(sec(5.4)), Lock: lockName})
		}},
		{"two steps holding a counting lock of two", func(h *History) {
			addPairHolds(h, [][2]float64{{10, 13}, {11, 14}, {13.5, 15}})
		}},
		{"a paused worker's step outliving its lost build's lock", func(h *History) {
			h.Final.Builds = append(h.Final.Builds, Build{ID: 16, Builder: "lk", Number: 3, Request: 6,
				State: "finished", Result: "exception", Reason: "worker lost", Worker: "w2", CreatedAt: at(sec(4.45))})
			h.Final.Requests = append(h.Final.Requests, Request{ID: 6, Builder: "lk", State: "complete", Build: 16})
			h.Faults = append(h.Faults, FaultRun{Kind: WorkerPause, Target: "w2", Start: at(sec(4.46)), End: at(sec(4.6))})
			h.Markers = append(h.Markers,
				Marker{Build: 16, Builder: "lk", Number: 3, Step: "hold", Phase: "start", At: at(sec(4.45)), Lock: lockName},
				Marker{Build: 16, Builder: "lk", Number: 3, Step: "hold", Phase: "end", At: at(sec(4.6)), Lock: lockName})
		}},
		{"a cancelled step left without its end", func(h *History) {
			h.Markers = append(h.Markers, Marker{Build: 16, Builder: "lk", Number: 3, Step: "hold", Phase: "start",
				At: at(sec(4.2)), Lock: lockName})
			h.Final.Builds = append(h.Final.Builds, Build{ID: 16, Builder: "lk", Number: 3, Request: 6,
				State: "finished", Result: "cancelled", Reason: "chaos cancel", CreatedAt: at(sec(4))})
			h.Final.Requests = append(h.Final.Requests, Request{ID: 6, Builder: "lk", State: "complete", Build: 16})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := validHistory()
			c.modify(h)
			if vs := Check(h); len(vs) != 0 {
				t.Fatalf("violations:\n%s", Report(h, vs))
			}
		})
	}
}

// A failure's report names the seed, the command that replays it and the
// events around each violation.
func TestReportShowsSeedAndTrace(t *testing.T) {
	h := validHistory()
	h.Events = []Event{
		{At: at(sec(1)), Kind: "force", Target: "m1", Detail: "a: request 1"},
		{At: at(sec(2.5)), Kind: "fault", Target: "m1", Detail: "master-kill for 1s"},
		{At: at(sec(30)), Kind: "push", Detail: "far away"},
	}
	h.Final.Requests[0].State = "claimed"
	out := Report(h, Check(h))
	for _, want := range []string{"seed 7", "make chaos SEED=7 DURATION=1m0s", "request 1 (a) is still claimed",
		"master-kill for 1s", "a: request 1"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "far away") {
		t.Errorf("report shows an event far from the violation:\n%s", out)
	}
}

// addPairHolds adds builds whose step held the counting lock "pair" (two
// holders) over the given spans, in seconds from the start.
func addPairHolds(h *History, spans [][2]float64) {
	h.LockLimits = map[string]int{"pair": 2}
	for i, span := range spans {
		id, n := int64(20+i), int64(i+1)
		h.Final.Builds = append(h.Final.Builds, Build{ID: id, Builder: "slow", Number: n, Request: id,
			State: "finished", Result: "failure", CreatedAt: at(sec(span[0]))})
		h.Final.Requests = append(h.Final.Requests, Request{ID: id, Builder: "slow", State: "complete", Build: id})
		h.Markers = append(h.Markers,
			Marker{Build: id, Builder: "slow", Number: n, Step: "long", Phase: "start", At: at(sec(span[0])), Lock: "pair"},
			Marker{Build: id, Builder: "slow", Number: n, Step: "long", Phase: "end", At: at(sec(span[1])), Lock: "pair"})
	}
}
