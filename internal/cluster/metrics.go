package cluster

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descMastersLive = prometheus.NewDesc("regent_masters_live",
		"Master incarnations alive or draining in the cluster.", nil, nil)
	descSupervisorTerms = prometheus.NewDesc("regent_supervisor_changes_total",
		"Times the supervisor lease was acquired, across the cluster.", nil, nil)
	descServiceMoves = prometheus.NewDesc("regent_service_moves_total",
		"Changes of owner of clustered services, across the cluster.", nil, nil)
	descUnowned = prometheus.NewDesc("regent_services_unowned",
		"Clustered services of the active generation that no master owns.", nil, nil)
	descOwned = prometheus.NewDesc("regent_services_owned",
		"Clustered services this master owns.", nil, nil)
	descHeartbeatAge = prometheus.NewDesc("regent_heartbeat_lag_seconds",
		"Time since this master's last heartbeat that succeeded was sent.", nil, nil)
	descSupervisor = prometheus.NewDesc("regent_supervisor",
		"1 while this master holds the supervisor lease, else 0.", nil, nil)
)

// Collector reports the cluster's figures, read from the store at each
// scrape, and this master's own: the services it owns, its heartbeat lag
// and whether it supervises. Register it with the master's metrics.
type Collector struct {
	member     *Member
	supervisor *Supervisor
}

// NewCollector returns the collector of a master's member and supervisor.
func NewCollector(m *Member, s *Supervisor) *Collector {
	return &Collector{member: m, supervisor: s}
}

// Describe sends the descriptions of the collector's metrics.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMastersLive, descSupervisorTerms, descServiceMoves,
		descUnowned, descOwned, descHeartbeatAge, descSupervisor} {
		ch <- d
	}
}

// Collect sends the metrics; a failed read of the store is reported as an
// invalid metric, which the handler shows as a scrape error.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	gauge(descOwned, float64(len(c.member.Owned())))
	gauge(descHeartbeatAge, c.member.HeartbeatAge().Seconds())
	held := 0.0
	if _, ok := c.supervisor.Lease(); ok {
		held = 1
	}
	gauge(descSupervisor, held)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.member.Store().ClusterCounts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descMastersLive, err)
		return
	}
	gauge(descMastersLive, float64(n.LiveMasters))
	gauge(descUnowned, float64(n.UnownedServices))
	ch <- prometheus.MustNewConstMetric(descSupervisorTerms, prometheus.CounterValue, float64(n.SupervisorTerms))
	ch <- prometheus.MustNewConstMetric(descServiceMoves, prometheus.CounterValue, float64(n.ServiceMoves))
}
