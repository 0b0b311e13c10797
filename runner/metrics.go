package runner

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	natsjs "github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/omniq/omniq/jetstream"
	"github.com/omniq/omniq/models"
	"github.com/omniq/omniq/runner/pluginhost"
)

// Metrics are the runner's Prometheus measurements. A nil *Metrics records
// nothing.
type Metrics struct {
	tasks       *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	inFlight    *prometheus.GaugeVec
	retries     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	plugin      *prometheus.CounterVec
	pending     *prometheus.GaugeVec
	refusedMsgs *prometheus.CounterVec
	states      *pluginStates
	streams     *streamGauges
	// perFunction holds each function's *functionMetrics, looked up
	// once: the functions whose tasks run here are the served ones, a
	// bounded set.
	perFunction sync.Map
	// errorTypes holds, per function, the error types of its handlers'
	// own that have series of their own (see errorTypeLabel).
	errorTypesMu sync.Mutex
	errorTypes   map[string]map[string]struct{}
}

// MaxErrorTypeSeries bounds the error types of a function's handlers' own
// (any type but those OmniQ assigns) that get series of their own in
// omniq_task_retries_total and omniq_dead_lettered_total; failures of
// further types of the function are counted under OtherErrorTypeLabel.
// A handler names its types, often from its input, and plugins are not
// trusted: unbounded, one that named a new type for each failure (the
// bundled faults plugin's fail does it from the payload, so a submitter
// could) left a series per type in the runner's memory and in every
// scrape, without end.
const MaxErrorTypeSeries = 100

// OtherErrorTypeLabel is the error_type label of the failures whose
// type is past a function's MaxErrorTypeSeries.
const OtherErrorTypeLabel = "_other"

// errorTypeLabel is the error_type label of a failure of function fn
// with type typ: typ itself when OmniQ defines it or while fn has fewer
// than MaxErrorTypeSeries types of its own, else OtherErrorTypeLabel.
// Only failures pay for it (a lock and a map lookup), never a success.
func (m *Metrics) errorTypeLabel(fn, typ string) string {
	if models.DefinedByOmniQ(typ) {
		return typ
	}
	m.errorTypesMu.Lock()
	defer m.errorTypesMu.Unlock()
	seen := m.errorTypes[fn]
	if _, ok := seen[typ]; ok {
		return typ
	}
	if len(seen) >= MaxErrorTypeSeries {
		return OtherErrorTypeLabel
	}
	if seen == nil {
		if m.errorTypes == nil {
			m.errorTypes = make(map[string]map[string]struct{})
		}
		seen = make(map[string]struct{})
		m.errorTypes[fn] = seen
	}
	seen[typ] = struct{}{}
	return typ
}

// functionMetrics are one function's series of the per-attempt metrics.
// WithLabelValues hashes the labels and takes the vector's lock: four
// calls per attempt were 3.5% of a draining runner's CPU in pprof.
type functionMetrics struct {
	inFlight prometheus.Gauge
	duration prometheus.Observer
	outcomes sync.Map // outcome name → prometheus.Counter (a fixed set of names)
}

// function returns fn's series, creating them on first use.
func (m *Metrics) function(fn string) *functionMetrics {
	if f, ok := m.perFunction.Load(fn); ok {
		return f.(*functionMetrics)
	}
	f, _ := m.perFunction.LoadOrStore(fn, &functionMetrics{inFlight: m.inFlight.WithLabelValues(fn), duration: m.duration.WithLabelValues(fn)})
	return f.(*functionMetrics)
}

// outcome returns the counter of fn's attempts that ended in outcome.
func (m *Metrics) outcome(fn string, f *functionMetrics, outcome string) prometheus.Counter {
	if c, ok := f.outcomes.Load(outcome); ok {
		return c.(prometheus.Counter)
	}
	c, _ := f.outcomes.LoadOrStore(outcome, m.tasks.WithLabelValues(fn, outcome))
	return c.(prometheus.Counter)
}

// streamGauges are omniq_dead_letters and omniq_tasks_waiting, and what
// OmniQ's streams and its account hold against their limits
// (omniq_stream_bytes, omniq_stream_max_bytes, omniq_jetstream_bytes,
// omniq_jetstream_max_bytes), read from the server at most once every
// streamGaugesEvery, at a scrape (each left out of a scrape that cannot
// read it): the same for every runner of a deployment, and right after a
// runner restarts (counters such as omniq_dead_lettered_total start again
// from zero).
type streamGauges struct {
	deadLetters, waiting          *prometheus.Desc
	streamBytes, streamMaxBytes   *prometheus.Desc
	accountBytes, accountMaxBytes *prometheus.Desc
	client                        atomic.Pointer[jetstream.Client]

	mu   sync.Mutex // held while the streams are read: scrapes meanwhile wait for that read
	read time.Time  // when the values were read
	last []prometheus.Metric
}

// streamGaugesEvery bounds how often scrapes read the streams: each read
// is six requests to the server, and the metrics address is reachable by
// whatever runs on the runner's machine (plugins included): 64 scrapers
// at once slowed the runner's tasks from 0.02 to 1 s.
const streamGaugesEvery = time.Second

func (g *streamGauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{g.deadLetters, g.waiting, g.streamBytes, g.streamMaxBytes, g.accountBytes, g.accountMaxBytes} {
		ch <- d
	}
}

func (g *streamGauges) Collect(ch chan<- prometheus.Metric) {
	c := g.client.Load()
	if c == nil {
		return
	}
	g.mu.Lock()
	if time.Since(g.read) >= streamGaugesEvery {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		g.last = g.readStreams(ctx, c)
		cancel()
		g.read = time.Now()
	}
	last := g.last
	g.mu.Unlock()
	for _, m := range last {
		ch <- m
	}
}

// readStreams reads the gauges from c's streams and account. A stream not
// read is left out, not an invalid metric: that fails the whole scrape
// (promhttp's default), every other metric with it, just when NATS
// trouble makes them most wanted. A limit is reported only where one is
// set.
func (g *streamGauges) readStreams(ctx context.Context, c *jetstream.Client) []prometheus.Metric {
	cfg := c.Config()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
		return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	var out []prometheus.Metric
	for _, stream := range []string{cfg.TasksStream, cfg.RetriesStream, cfg.DLQStream, "KV_" + cfg.StateBucket, "KV_" + cfg.FunctionsBucket} {
		s, err := c.JetStream().Stream(ctx, stream)
		if err != nil {
			continue
		}
		info := s.CachedInfo()
		switch stream {
		case cfg.DLQStream:
			out = append(out, gauge(g.deadLetters, float64(info.State.Msgs)))
		case cfg.RetriesStream:
			out = append(out, gauge(g.waiting, float64(info.State.Msgs)))
		}
		out = append(out, gauge(g.streamBytes, float64(info.State.Bytes), stream))
		if info.Config.MaxBytes > 0 {
			out = append(out, gauge(g.streamMaxBytes, float64(info.Config.MaxBytes), stream))
		}
	}
	if a, err := c.JetStream().AccountInfo(ctx); err == nil {
		used, limit := a.Store, a.Limits.MaxStore
		if cfg.Storage == natsjs.MemoryStorage {
			used, limit = a.Memory, a.Limits.MaxMemory
		}
		out = append(out, gauge(g.accountBytes, float64(used)))
		if limit > 0 {
			out = append(out, gauge(g.accountMaxBytes, float64(limit)))
		}
	}
	return out
}

// pluginStates is the omniq_plugin_state gauge, read from the plugin host
// at each scrape.
type pluginStates struct {
	desc *prometheus.Desc
	host atomic.Pointer[pluginhost.Host]
}

// pluginStateNames are the states omniq_plugin_state reports.
var pluginStateNames = []pluginhost.State{pluginhost.StateStarting, pluginhost.StateUp, pluginhost.StateRestarting,
	pluginhost.StateQuarantined, pluginhost.StateStopped}

func (p *pluginStates) Describe(ch chan<- *prometheus.Desc) { ch <- p.desc }

func (p *pluginStates) Collect(ch chan<- prometheus.Metric) {
	h := p.host.Load()
	if h == nil {
		return
	}
	for _, st := range h.Statuses() {
		for _, name := range pluginStateNames {
			v := 0.0
			if st.State == name {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(p.desc, prometheus.GaugeValue, v, st.Plugin, string(name))
		}
	}
}

// NewMetrics creates the runner's metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		tasks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniq_tasks_total", Help: "Task attempts finished, by function and outcome (succeeded, retried, failed, cancelled; quarantined: put back to wait for its plugin's quarantine; released: put back at shutdown; lost: another runner had taken the task over; error: the outcome could not be recorded, the task is redelivered).",
		}, []string{"function", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "omniq_task_duration_seconds", Help: "Time from the start of an attempt to its outcome, by function.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 12),
		}, []string{"function"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "omniq_tasks_in_flight", Help: "Attempts running now, by function.",
		}, []string{"function"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniq_task_retries_total", Help: "Retries scheduled, by function and error type.",
		}, []string{"function", "error_type"}),
		deadLetters: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniq_dead_lettered_total", Help: "Tasks dead-lettered, by function and error type.",
		}, []string{"function", "error_type"}),
		plugin: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "omniq_plugin_events_total", Help: "Plugin lifecycle events (started, crashed, start_failed, quarantined, hung_killed), by plugin.",
		}, []string{"plugin", "event"}),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "omniq_consumer_pending", Help: "Tasks waiting in a function's consumer (consumer lag), sampled.",
		}, []string{"function"}),
	}
	m.refusedMsgs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "omniq_refused_messages_total", Help: "Task messages dropped without running because they were not the task they named (foreign_task_id: the id is another function's task; bad_copy: a malformed copy of an existing task), by function and reason.",
	}, []string{"function", "reason"})
	m.states = &pluginStates{desc: prometheus.NewDesc("omniq_plugin_state",
		"1 for the state each plugin is in (starting, up, restarting, quarantined, stopped), 0 for the others.", []string{"plugin", "state"}, nil)}
	m.streams = &streamGauges{
		deadLetters: prometheus.NewDesc("omniq_dead_letters",
			"Entries in the dead-letter stream now: failed tasks an operator can inspect, replay or purge.", nil, nil),
		waiting: prometheus.NewDesc("omniq_tasks_waiting",
			"Tasks waiting in the runners' retries stream now: retries and delayed starts not yet due, and those due but not yet taken (retries under a second wait as redeliveries and show in omniq_consumer_pending instead).", nil, nil),
		streamBytes: prometheus.NewDesc("omniq_stream_bytes",
			"Bytes each of OmniQ's streams holds now (the state and functions buckets as KV_<bucket>), by stream.", []string{"stream"}, nil),
		streamMaxBytes: prometheus.NewDesc("omniq_stream_max_bytes",
			"The size limit (max_bytes) an operator set on an OmniQ stream, by stream; absent where there is none.", []string{"stream"}, nil),
		accountBytes: prometheus.NewDesc("omniq_jetstream_bytes",
			"JetStream storage OmniQ's NATS account uses now (file storage, or memory with memory storage), every stream of the account included.", nil, nil),
		accountMaxBytes: prometheus.NewDesc("omniq_jetstream_max_bytes",
			"The JetStream storage limit of OmniQ's NATS account (max_file, or max_mem with memory storage); absent where the account has none (the embedded server: its store's limit is the server's, 75% of the disk space free when it started).", nil, nil),
	}
	reg.MustRegister(m.tasks, m.duration, m.inFlight, m.retries, m.deadLetters, m.plugin, m.pending, m.refusedMsgs, m.states, m.streams)
	return m
}

// watchStreams makes omniq_dead_letters and omniq_tasks_waiting read c's
// streams.
func (m *Metrics) watchStreams(c *jetstream.Client) {
	if m != nil && c != nil {
		m.streams.client.Store(c)
	}
}

// watchPlugins makes omniq_plugin_state report h's plugins.
func (m *Metrics) watchPlugins(h *pluginhost.Host) {
	if m != nil && h != nil {
		m.states.host.Store(h)
	}
}

func (m *Metrics) started(fn string) {
	if m != nil {
		m.function(fn).inFlight.Inc()
	}
}

func (m *Metrics) finished(fn, outcome string, d time.Duration) {
	if m == nil {
		return
	}
	f := m.function(fn)
	f.inFlight.Dec()
	m.outcome(fn, f, outcome).Inc()
	f.duration.Observe(d.Seconds())
}

func (m *Metrics) retried(fn, errType string) {
	if m != nil {
		m.retries.WithLabelValues(fn, m.errorTypeLabel(fn, errType)).Inc()
	}
}

// unservedLabel is the function label of the tasks of functions no runner
// serves: their names are whatever a submitter publishes, and a series
// each would let a submitter grow the runner's memory, and every
// scraper's, without bound.
const unservedLabel = "_unserved"

// metricFunction is the function label for a task that failed with te.
func metricFunction(fn string, te models.TaskError) string {
	if te.ErrorType == models.ErrorTypeUnknownFunction {
		return unservedLabel
	}
	return fn
}

func (m *Metrics) deadLettered(fn, errType string) {
	if m != nil {
		m.deadLetters.WithLabelValues(fn, m.errorTypeLabel(fn, errType)).Inc()
	}
}

// PluginEvent records a plugin lifecycle event; pass it as
// pluginhost.Config.OnEvent.
func (m *Metrics) PluginEvent(e pluginhost.Event) {
	if m != nil {
		m.plugin.WithLabelValues(e.Plugin, string(e.Kind)).Inc()
	}
}

func (m *Metrics) setPending(fn string, n uint64) {
	if m != nil {
		m.pending.WithLabelValues(fn).Set(float64(n))
	}
}

func (m *Metrics) refused(fn, reason string) {
	if m != nil {
		m.refusedMsgs.WithLabelValues(fn, reason).Inc()
	}
}
