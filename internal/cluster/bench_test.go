package cluster_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/regent-ci/regent/internal/cluster"
	"github.com/regent-ci/regent/internal/testutil/pgtest"
	"github.com/regent-ci/regent/internal/testutil/proxy"
)

// BenchmarkFailover measures, over 20 trials each, how long a poller takes
// to have a new live owner after its owner crashes (its database
// connections reset, so its session ends) and after it hangs (its
// connections blackholed, so only the time-to-live, 3s here, tells). It
// reports the median, 90th percentile and maximum in milliseconds.
func BenchmarkFailover(b *testing.B) {
	for _, mode := range []string{"crash", "hang"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				took := failoverTrials(b, mode, 20)
				slices.Sort(took)
				ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
				b.ReportMetric(ms(took[len(took)/2]), "p50-ms")
				b.ReportMetric(ms(took[len(took)*9/10]), "p90-ms")
				b.ReportMetric(ms(took[len(took)-1]), "max-ms")
			}
		})
	}
}

// failoverTrials runs trials failovers of a three-master cluster, each
// master behind a fault proxy, and returns how long each took.
func failoverTrials(b *testing.B, mode string, trials int) []time.Duration {
	const ttl = 3 * time.Second
	dsn := pgtest.URL(b)
	nodes := map[string]*node{}
	proxies := map[string]*proxy.Proxy{}
	for _, name := range []string{"a", "b", "c"} {
		proxies[name] = proxy.Start(b, dbHost(b, dsn))
		nodes[name] = startNode(b, viaProxy(b, dsn, proxies[name].Addr()), name,
			nodeOptions{ttl: ttl, tags: []string{"poller"}})
	}
	watch := startNode(b, dsn, "watcher", nodeOptions{ttl: ttl})
	applyRepos(b, watch.st, []string{"poller"}, "app")
	svc := cluster.PollerService("app")
	var took []time.Duration
	for trial := range trials {
		// The watcher carries no tag and so never owns the poller.
		var owner string
		waitFor(b, 10*time.Second, "an owner", func() bool {
			owner = owners(b, watch.st)[svc]
			return owner != ""
		})
		victim := nodes[owner]
		oldID := victim.member.Incarnation()
		if mode == "crash" {
			proxies[owner].Reset()
		} else {
			proxies[owner].Blackhole()
		}
		start := time.Now()
		waitFor(b, ttl+10*time.Second, fmt.Sprintf("trial %d: a new owner", trial), func() bool {
			o := owners(b, watch.st)[svc]
			return o != "" && o != owner
		})
		took = append(took, time.Since(start))
		proxies[owner].Pass()
		waitFor(b, 20*time.Second, "the victim to rejoin", func() bool {
			id := victim.member.Incarnation()
			return id != 0 && id != oldID
		})
	}
	return took
}
