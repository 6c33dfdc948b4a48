package chaos

import (
	"fmt"
	"strconv"
	"strings"
)

// lockName is the exclusive lock that builders of the "locked" family
// hold for their whole build; pairLock, the counting lock that the step
// of the "slow" family holds.
const (
	lockName = "excl"
	pairLock = "pair"
)

// lockLimits are the max_holders of the campaign's locks.
var lockLimits = map[string]int{lockName: 1, pairLock: 2}

// hookSecret names the secret that signs webhook deliveries.
const hookSecret = "hook"

// Services that every configuration of the campaign implies.
var campaignServices = []string{"housekeeping", "poller:app", "scheduler:tick"}

// renderEnv is what a configuration needs from the running campaign.
type renderEnv struct {
	RepoURL string
	MarkDir string
	Workers []string
	Spare   string
}

// Render writes the layout as a regent.star file: the repository polled
// every second, the workers, the builders, a branch scheduler for the
// "ci" builders, a force scheduler for all, and a periodic one.
func (l Layout) Render(e renderEnv) string {
	workers := e.Workers
	if l.Spare {
		workers = append(append([]string(nil), workers...), e.Spare)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "lock(name = %q, max_holders = %d)\n", lockName, lockLimits[lockName])
	fmt.Fprintf(&b, "lock(name = %q, max_holders = %d)\n", pairLock, lockLimits[pairLock])
	fmt.Fprintf(&b, "git_repo(name = \"app\", url = %q, branches = [\"main\"], poll_interval = \"1s\",\n", e.RepoURL)
	fmt.Fprintf(&b, "    webhook_secret = secret(%q))\n", hookSecret)
	fmt.Fprintf(&b, "workers = %s\n", starList(workers))
	b.WriteString("for n in workers:\n    worker(name = n, password = secret(n), max_builds = 2)\n")
	var ci []string
	for _, spec := range l.Builders {
		if spec.Family == "ci" {
			ci = append(ci, spec.Name())
		}
		b.WriteString(renderBuilder(spec, e.MarkDir))
	}
	fmt.Fprintf(&b, "scheduler.branch(name = \"on-main\", repo = \"app\", branch = \"main\", builders = %s)\n",
		starList(ci))
	fmt.Fprintf(&b, "scheduler.force(name = \"force\", builders = %s)\n", starList(l.Names()))
	fmt.Fprintf(&b, "scheduler.periodic(name = \"tick\", builders = [%q], interval = \"5s\")\n", ci[0])
	return b.String()
}

func renderBuilder(spec BuilderSpec, markDir string) string {
	var steps []string
	lock := ""
	switch spec.Family {
	case "ci":
		steps = []string{markStep("s1", "0.1", ""), markStep("s2", "0.2", "")}
	case "slow":
		steps = []string{markStep("long", "3", pairLock)}
	case "locked":
		lock = lockName
		steps = []string{markStep("hold", "0.3", lockName)}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "builder(name = %q, workers = workers, env = {\"MARKDIR\": %q},\n", spec.Name(), markDir)
	fmt.Fprintf(&b, "    retry_lost = %s,\n", starBool(spec.RetryLost))
	if spec.Previous != "" {
		fmt.Fprintf(&b, "    previous_names = [%q],\n", spec.Previous)
	}
	if lock != "" {
		fmt.Fprintf(&b, "    locks = [%q],\n", lock)
	}
	fmt.Fprintf(&b, "    steps = [%s])\n", strings.Join(steps, ", "))
	return b.String()
}

// markStep is a shell step that appends a start and an end line to its
// build's marker file around a sleep, naming lock, which the step holds
// itself unless it is the builder-wide lockName; see [ParseMarkers].
func markStep(name, sleep, lock string) string {
	locks := ""
	if lock != "" && lock != lockName {
		locks = fmt.Sprintf(", locks = [%q]", lock)
	}
	mark := func(phase string) string {
		return fmt.Sprintf(`echo "$REGENT_BUILDER $REGENT_BUILD_NUMBER %s %s $(date +%%s%%N) %s" >> "$MARKDIR/$REGENT_BUILD_ID"`,
			name, phase, lock)
	}
	cmd := mark("start") + "; sleep " + sleep + "; " + mark("end")
	return fmt.Sprintf("step.shell(name = %q, command = %s%s)", name, strconv.Quote(cmd), locks)
}

func starList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func starBool(v bool) string {
	if v {
		return "True"
	}
	return "False"
}
