package bench

import (
	"fmt"
	"strings"
)

// The configurations of the Regent workloads, as Starlark. Every worker's
// password is workerPassword, written literally, except in the large
// apply's configuration, where each worker has its own.

// workerPassword is every benchmark worker's password.
const workerPassword = "bench-password"

// builderNames returns the names of n builders, b0000 onwards, the same
// names scripts/buildbot/mastercfg.py gives Buildbot's builders.
func builderNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("b%04d", i)
	}
	return names
}

// workerNames returns the names of n workers, w1 onwards.
func workerNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("w%d", i+1)
	}
	return names
}

// padStar defines pad(i, n), i in decimal with leading zeros to n
// digits: Starlark's % formatting has no widths.
const padStar = `def pad(i, n):
    s = str(i)
    return "0" * (n - len(s)) + s
`

// uniformStar declares workers w1..wN and builders b0000.. that each run
// command in one step on any of the workers, and a force scheduler over
// all of them. With shift, the builders change as the reconfiguration
// workload changes them: b0000-b0009 renamed to renamed0000-renamed0009
// (declared with previous_names), b0010-b0019 removed, new0000-new0009
// added.
func uniformStar(workers, builders int, command string, shift bool) string {
	var b strings.Builder
	b.WriteString(padStar)
	fmt.Fprintf(&b, "WORKERS = [worker(name = \"w%%d\" %% i, password = %q) for i in range(1, %d)]\n",
		workerPassword, workers+1)
	fmt.Fprintf(&b, "STEPS = [step.shell(command = %q, name = \"work\")]\n", command)
	b.WriteString("names = []\n")
	fmt.Fprintf(&b, "for i in range(%d):\n", builders)
	b.WriteString("    name, previous = \"b\" + pad(i, 4), []\n")
	if shift {
		b.WriteString("    if i < 10:\n        name, previous = \"renamed\" + pad(i, 4), [name]\n")
		b.WriteString("    elif i < 20:\n        continue\n")
	}
	b.WriteString("    builder(name = name, previous_names = previous, workers = WORKERS, steps = STEPS)\n")
	b.WriteString("    names.append(name)\n")
	if shift {
		b.WriteString("for i in range(10):\n")
		b.WriteString("    builder(name = \"new\" + pad(i, 4), workers = WORKERS, steps = STEPS)\n")
		b.WriteString("    names.append(\"new\" + pad(i, 4))\n")
	}
	b.WriteString("scheduler.force(name = \"force\", builders = names)\n")
	return b.String()
}

// largeStar declares the large configuration of BenchmarkApply in
// internal/store: 1,000 builders, 200 workers, each with its own password,
// and 300 force schedulers.
// With shift, ten of each kind change: builders b0000-b0009 renamed
// (declared), b0010-b0019 removed and ten added; workers w010-w019
// removed and ten added; schedulers s000-s009 removed and ten added.
func largeStar(shift bool) string {
	var b strings.Builder
	b.WriteString(padStar)
	b.WriteString("def skipped(i):\n")
	if shift {
		b.WriteString("    return i >= 10 and i < 20\n")
	} else {
		b.WriteString("    return False\n")
	}
	fmt.Fprintf(&b, "for i in range(200):\n    if not skipped(i):\n"+
		"        worker(name = \"w\" + pad(i, 3), password = %q + pad(i, 3), max_builds = 2)\n",
		workerPassword+"-")
	b.WriteString("for i in range(1000):\n    if skipped(i):\n        continue\n")
	b.WriteString("    name, previous = \"b\" + pad(i, 4), []\n")
	if shift {
		b.WriteString("    if i < 10:\n        name, previous = \"renamed\" + pad(i, 4), [name]\n")
	}
	b.WriteString("    builder(name = name, previous_names = previous, workers = [\"w\" + pad(20 + i % 180, 3)],\n" +
		"            steps = [step.shell(command = \"make test\", name = \"test\")])\n")
	b.WriteString("for i in range(300):\n    if " + boolStar(shift) + " and i < 10:\n        continue\n")
	b.WriteString("    scheduler.force(name = \"s\" + pad(i, 3), builders = [\"b\" + pad(100 + i, 4)])\n")
	if shift {
		fmt.Fprintf(&b, "for i in range(10):\n"+
			"    worker(name = \"wnew\" + pad(i, 2), password = %q + pad(i, 2))\n"+
			"    builder(name = \"bnew\" + pad(i, 2), workers = [\"w020\"], steps = [step.shell(command = \"true\")])\n"+
			"    scheduler.force(name = \"snew\" + pad(i, 2), builders = [\"b0500\"])\n", workerPassword+"-new")
	}
	return b.String()
}

func boolStar(v bool) string {
	if v {
		return "True"
	}
	return "False"
}

// pollerStar declares one repository, polled every second.
func pollerStar(repo string) string {
	return fmt.Sprintf("git_repo(name = \"app\", url = %q, branches = [\"main\"], poll_interval = \"1s\")\n", repo)
}
