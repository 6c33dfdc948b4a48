package web

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/regent-ci/regent/internal/store"
)

// newMetrics returns the server's own registry: the cluster-wide counts
// read from the store at each scrape, and the Go runtime's figures.
func newMetrics(st *store.Store, extra []prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&storeCollector{store: st}, collectors.NewGoCollector())
	reg.MustRegister(extra...)
	return reg
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

var (
	descRunning = prometheus.NewDesc("regent_builds_running",
		"Builds running across the cluster.", nil, nil)
	descPending = prometheus.NewDesc("regent_build_requests_pending",
		"Build requests waiting for a worker across the cluster.", nil, nil)
	descWorkers = prometheus.NewDesc("regent_workers_connected",
		"Workers with a live session.", nil, nil)
	descGeneration = prometheus.NewDesc("regent_config_generation_active",
		"Number of the active configuration generation.", nil, nil)
)

// storeCollector reads the gauges from the store in one query per
// scrape. The figures are the cluster's, so every master reports the same
// values.
type storeCollector struct {
	store *store.Store
}

// Describe sends the descriptions of the collector's gauges.
func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descRunning
	ch <- descPending
	ch <- descWorkers
	ch <- descGeneration
}

// Collect reads the counts and sends them; a failed read is reported as
// an invalid metric, which the handler shows as a scrape error.
func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := c.store.Counts(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descRunning, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(descRunning, prometheus.GaugeValue, float64(n.RunningBuilds))
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(n.PendingRequests))
	ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(n.ConnectedWorkers))
	ch <- prometheus.MustNewConstMetric(descGeneration, prometheus.GaugeValue, float64(n.ActiveGeneration))
}
