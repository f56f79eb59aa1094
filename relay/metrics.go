package relay

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/pushrelay/pushrelay/policy"
	"github.com/pushrelay/pushrelay/relay/spool"
	"github.com/pushrelay/pushrelay/relay/wire"
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
	acks            *prometheus.CounterVec
	deliveryLatency *prometheus.HistogramVec
	spoolErrors     *prometheus.CounterVec
	egressErrors    *prometheus.CounterVec // see egresshealth.go
	quickRetries    *prometheus.CounterVec
	breakerOpen     *prometheus.GaugeVec

	legacy *legacyMetrics // nil unless metrics.legacy_names
}

// newMetrics registers the relay's series; legacy adds the old proxy's
// names (metrics.legacy_names).
func newMetrics(version string, legacy bool) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pushrelay_notifications_total",
			Help: "Notifications by app, provider, type and outcome (delivered, removed, spooled, failed, rejected, expired).",
		}, []string{"app", "provider", "type", "outcome"}),
		providerSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "pushrelay_provider_request_duration_seconds",
			Help:    "Time of one upstream attempt: one HTTP request to APNs, FCM or an upstream push proxy.",
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
	m.acks = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushrelay_acks_total",
		Help: "Delivery receipts (acks) from the mobile apps, by the app that delivered the notification; " +
			"app=\"unknown\" when the relay does not remember it. Divide by the delivered outcomes for a delivery ratio.",
	}, []string{"app"})
	m.deliveryLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "pushrelay_delivery_latency_seconds",
		Help:    "From the provider accepting a notification to the phone receiving it, as the app's ack reports it.",
		Buckets: []float64{.1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
	}, []string{"app"})
	m.quickRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushrelay_provider_quick_retries_total",
		Help: "Quick second attempts, within delivery.timeout, at notifications whose first attempt met a transient failure (5xx, reset, lost connection).",
	}, []string{"provider"})
	m.breakerOpen = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushrelay_breaker_open",
		Help: "1 while an app's provider is taken to be down and new notifications for it go straight to the spool.",
	}, []string{"app"})
	m.reg.MustRegister(m.quickRetries, m.breakerOpen)
	m.egressErrors = newEgressErrors(m.reg)
	m.spoolErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pushrelay_spool_errors_total",
		Help: "Notifications the spool could not keep for redelivery (each answered FAIL), by reason: " +
			"disk_full (spool.dir has too little space), unavailable (JetStream unreachable or without quorum), " +
			"full (spool.max_messages/max_bytes), error.",
	}, []string{"reason"})
	for _, r := range []string{spool.ReasonDiskFull, spool.ReasonUnavailable, spool.ReasonFull, spool.ReasonError} {
		m.spoolErrors.WithLabelValues(r) // export zeros: an alert can watch the rate from the start
	}
	m.reg.MustRegister(m.spoolErrors)
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "pushrelay_build_info",
		Help: "Always 1; the version label says which build runs.",
	}, []string{"version"})
	build.WithLabelValues(version).Set(1)
	m.reg.MustRegister(m.notifications, m.providerSeconds, m.providerErrors, m.fieldsRemoved,
		m.requests, m.rejected, m.requestSeconds, m.inFlight, m.egressDenied, m.credExpiry, m.redeliveries, m.acks, m.deliveryLatency, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, f := range policy.Fields() {
		m.fieldsRemoved.WithLabelValues(f.String()) // export zeros: a dashboard sees the field exists
	}
	if legacy {
		m.legacy = newLegacyMetrics(m.reg)
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

// sent records the duration of one provider attempt.
func (m *metrics) sent(provider string, d time.Duration) {
	m.providerSeconds.WithLabelValues(provider).Observe(d.Seconds())
	if l := m.legacy; l != nil {
		l.sent(provider, d)
	}
}

// outcomeEvent is one notification's outcome, as counted.
type outcomeEvent struct {
	app       string // the configured platform name; "none"/"unknown" when no app took it
	provider  string // apns, fcm, upstream; "none" when no app took it
	typ       string // wire.TypeLabel of the notification's type
	transport string // the notification's transport ("" or voip), for the legacy names only
	outcome   string // outcomeDelivered, ...
	reason    string // the provider's reason code (fixed vocabulary) for removals and failures
	direct    bool   // decided in Push, not by a redelivery or an expiry
}

// outcome counts a notification's outcome: the one place where
// pushrelay_notifications_total and, with metrics.legacy_names, the old
// proxy's service_* counters are updated.
func (m *metrics) outcome(e outcomeEvent) {
	m.notifications.WithLabelValues(e.app, e.provider, e.typ, e.outcome).Inc()
	if l := m.legacy; l != nil {
		l.outcome(e)
	}
}

// reject counts a request refused before the pipeline, by reason.
func (m *metrics) reject(reason string) {
	m.rejected.WithLabelValues(reason).Inc()
	if l := m.legacy; l != nil && (reason == rejectBadRequest || reason == rejectTooLarge) {
		l.badRequest.Inc()
	}
}

// handled counts one ingress request and its duration.
func (m *metrics) handled(route string, code int, d time.Duration) {
	codeLabel := "200" // the usual answer, without formatting it each time
	if code != http.StatusOK {
		codeLabel = strconv.Itoa(code)
	}
	m.requests.WithLabelValues(route, codeLabel).Inc()
	m.requestSeconds.WithLabelValues(route).Observe(d.Seconds())
	if l := m.legacy; l != nil && (route == routeSendPush || route == routeAck) {
		l.requestSeconds.Observe(d.Seconds())
	}
}

// acked counts a delivery receipt for app; latency < 0 when unknown.
func (m *metrics) acked(app string, latency time.Duration) {
	m.acks.WithLabelValues(app).Inc()
	if latency >= 0 {
		m.deliveryLatency.WithLabelValues(app).Observe(latency.Seconds())
	}
}

// legacyMetrics are mattermost-push-proxy's metric names, for dashboards
// built on it. Their platform label is the old proxy's: "apple" for an
// apns app, "android" for an fcm app (and "upstream" for an upstream app,
// which the old proxy did not have); transport is "" or "voip".
type legacyMetrics struct {
	notifications     *prometheus.CounterVec // platform, type, transport
	success           *prometheus.CounterVec // platform, type
	failure           *prometheus.CounterVec // platform, type
	failureWithReason *prometheus.CounterVec // platform, type, reason
	removal           *prometheus.CounterVec // platform, transport, reason
	badRequest        prometheus.Counter
	apnsSeconds       prometheus.Histogram
	fcmSeconds        prometheus.Histogram
	notificationSecs  *prometheus.HistogramVec // platform
	requestSeconds    prometheus.Histogram
}

func newLegacyMetrics(reg *prometheus.Registry) *legacyMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help + " (mattermost-push-proxy's name)"}, labels)
	}
	histogram := func(name, help string) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help + " (mattermost-push-proxy's name)", Buckets: prometheus.DefBuckets})
	}
	l := &legacyMetrics{
		notifications:     counter("service_notifications_total", "Notifications sent to a provider, by platform kind, type and transport.", "platform", "type", "transport"),
		success:           counter("service_success_total", "Notifications delivered.", "platform", "type"),
		failure:           counter("service_failure_total", "Notifications not delivered (dead tokens included).", "platform", "type"),
		failureWithReason: counter("service_failure_with_reason_total", "Notifications not delivered, by reason.", "platform", "type", "reason"),
		removal:           counter("service_removal_total", "Notifications refused for a dead device token.", "platform", "transport", "reason"),
		badRequest: prometheus.NewCounter(prometheus.CounterOpts{Name: "service_bad_request_total",
			Help: "Requests that were not a valid push or ack (mattermost-push-proxy's name)."}),
		apnsSeconds: histogram("service_apns_request_duration_seconds", "Time of one APNs send."),
		fcmSeconds:  histogram("service_fcm_request_duration_seconds", "Time of one FCM send."),
		notificationSecs: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "service_notification_duration_seconds",
			Help: "Time of one provider send, by platform kind (mattermost-push-proxy's name).", Buckets: prometheus.DefBuckets}, []string{"platform"}),
		requestSeconds: histogram("service_request_duration_seconds", "send_push and ack handling time."),
	}
	reg.MustRegister(l.notifications, l.success, l.failure, l.failureWithReason, l.removal, l.badRequest,
		l.apnsSeconds, l.fcmSeconds, l.notificationSecs, l.requestSeconds)
	return l
}

// legacyPlatform is the old proxy's platform label for a provider; "" when
// no provider took the notification.
func legacyPlatform(provider string) string {
	switch provider {
	case "apns":
		return "apple"
	case "fcm":
		return "android"
	case "upstream":
		return "upstream"
	}
	return ""
}

// legacyTransport maps a notification's transport to a fixed set.
func legacyTransport(t string) string {
	if t == wire.TransportVoIP {
		return wire.TransportVoIP
	}
	return ""
}

func (l *legacyMetrics) sent(provider string, d time.Duration) {
	platform := legacyPlatform(provider)
	if platform == "" {
		return
	}
	l.notificationSecs.WithLabelValues(platform).Observe(d.Seconds())
	switch provider {
	case "apns":
		l.apnsSeconds.Observe(d.Seconds())
	case "fcm":
		l.fcmSeconds.Observe(d.Seconds())
	}
}

// outcome maps an outcome onto the old proxy's counters as it counted
// them: every push it tried, successes, failures with their reason, and
// dead tokens (a removal is also a failure there). A notification kept in
// the spool counts when its fate is known.
func (l *legacyMetrics) outcome(e outcomeEvent) {
	if e.outcome == outcomeRejected {
		l.badRequest.Inc()
		return
	}
	platform := legacyPlatform(e.provider)
	if platform == "" {
		return
	}
	transport := legacyTransport(e.transport)
	if e.direct {
		l.notifications.WithLabelValues(platform, e.typ, transport).Inc()
	}
	fail := func(reason string) {
		l.failure.WithLabelValues(platform, e.typ).Inc()
		if reason != "" {
			l.failureWithReason.WithLabelValues(platform, e.typ, reason).Inc()
		}
	}
	switch e.outcome {
	case outcomeDelivered:
		l.success.WithLabelValues(platform, e.typ).Inc()
	case outcomeRemoved:
		l.removal.WithLabelValues(platform, transport, e.reason).Inc()
		fail(e.reason)
	case outcomeFailed:
		fail(e.reason)
	case outcomeExpired:
		fail(outcomeExpired)
	}
}

// quickRetry counts a quick second attempt at a provider.
func (m *metrics) quickRetry(provider string) {
	m.quickRetries.WithLabelValues(provider).Inc()
}

// breaker records whether app's breaker is open.
func (m *metrics) breaker(app string, open bool) {
	v := 0.0
	if open {
		v = 1
	}
	m.breakerOpen.WithLabelValues(app).Set(v)
}

// watchDeadTokens exports how many dead device tokens the relay remembers,
// read at scrape time.
func (m *metrics) watchDeadTokens(count func() int) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "pushrelay_dead_tokens_remembered",
		Help: "Device tokens found dead on a redelivery and remembered for spool.max_age: the next push to each is answered REMOVE at once.",
	}, func() float64 { return float64(count()) }))
}
