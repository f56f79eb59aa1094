package relay

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/relay/spool"
)

// Outcomes of a notification, the values of the `outcome` label.
const (
	outcomeDelivered = "delivered"
	outcomeRemoved   = "removed"
	outcomeSpooled   = "spooled"
	outcomeFailed    = "failed"
	outcomeRejected  = "rejected"
	outcomeExpired   = "expired"
)

// metrics are the relay's Prometheus series. Every label value comes from
// the configuration or a fixed set, never from request content.
type metrics struct {
	reg *prometheus.Registry

	notifications   *prometheus.CounterVec
	providerSeconds *prometheus.HistogramVec
	providerErrors  *prometheus.CounterVec
	fieldsRemoved   *prometheus.CounterVec
	requests        *prometheus.CounterVec
	rejected        *prometheus.CounterVec
	requestSeconds  *prometheus.HistogramVec
	inFlight        prometheus.Gauge
	egressDenied    *prometheus.CounterVec
	credExpiry      *prometheus.GaugeVec
	redeliveries    prometheus.Counter
}

func newMetrics(version string) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushrelay_notifications_total",
			Help: "Notifications by app, provider, type and outcome (delivered, removed, spooled, failed, rejected, expired).",
		}, []string{"app", "provider", "type", "outcome"}),
		providerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushrelay_provider_request_duration_seconds",
			Help:    "Time of one upstream send, the SDK's own retries included.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"provider"}),
		providerErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushrelay_provider_errors_total",
			Help: "Failed upstream sends by provider and reason (Apple's or Google's reason code, timeout, transport...).",
		}, []string{"provider", "reason"}),
		fieldsRemoved: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushrelay_policy_fields_removed_total",
			Help: "Fields the policy removed from notifications before they left.",
		}, []string{"field"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushrelay_ingress_requests_total",
			Help: "Ingress HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushrelay_ingress_rejected_total",
			Help: "Ingress requests refused before reaching the pipeline, by reason.",
		}, []string{"reason"}),
		requestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushrelay_ingress_request_duration_seconds",
			Help:    "Ingress request handling time by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "pushrelay_in_flight",
			Help: "send_push requests being handled now.",
		}),
		egressDenied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushrelay_egress_denied_total",
			Help: "Outbound requests refused because the host is not in egress.allowed_hosts.",
		}, []string{"host"}),
		credExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "pushrelay_credential_expiry_timestamp_seconds",
			Help: "When an app's certificate expires (Unix time); absent for keys that do not expire.",
		}, []string{"app"}),
	}
	m.redeliveries = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "pushrelay_spool_redeliveries_total",
		Help: "Attempts made from the spool at notifications an earlier attempt failed to deliver.",
	})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushrelay_build_info",
		Help: "Always 1; the version label says which build runs.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	m.reg.MustRegister(m.notifications, m.providerSeconds, m.providerErrors, m.fieldsRemoved,
		m.requests, m.rejected, m.requestSeconds, m.inFlight, m.egressDenied, m.credExpiry, m.redeliveries, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, f := range policy.Fields() {
		m.fieldsRemoved.WithLabelValues(f.String()) // export zeros: a dashboard sees the field exists
	}
	return m
}

// watchSpool exports the spool's depth and the age of its oldest entry,
// read at scrape time.
func (m *metrics) watchSpool(sp *spool.Spool) {
	stats := func() (int64, time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, oldest, err := sp.Stats(ctx)
		if err != nil {
			return -1, -1
		}
		return n, oldest
	}
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushrelay_spool_messages",
			Help: "Notifications kept for redelivery (-1 when the spool cannot be read).",
		}, func() float64 { n, _ := stats(); return float64(n) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pushrelay_spool_oldest_age_seconds",
			Help: "Age of the oldest notification kept for redelivery; 0 when none.",
		}, func() float64 { _, age := stats(); return age.Seconds() }),
	)
}

func (m *metrics) removed(s policy.FieldSet) {
	if s == 0 {
		return
	}
	for _, f := range s.Fields() {
		m.fieldsRemoved.WithLabelValues(f.String()).Inc()
	}
}

func (m *metrics) sent(provider string, d time.Duration) {
	m.providerSeconds.WithLabelValues(provider).Observe(d.Seconds())
}
