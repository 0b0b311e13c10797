package jetstream_test

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/omniq/omniq/jetstream"
)

// A runner's status sits in the functions bucket beside its
// registrations, under a key no function name can have: registrations
// stay as they were, a status is listed only under its own runner's key,
// and a runner stopping removes only a status it wrote itself.
func TestRunnerStatusesLiveBesideRegistrations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, jetstream.Config{})
	if err := e.client.Register(ctx(t), "r1", []jetstream.Registration{{Function: "echo"}}, time.Minute); err != nil {
		t.Fatal(err)
	}
	st := jetstream.RunnerStatus{Runner: "r1", Plugins: []jetstream.PluginStatus{
		{Plugin: "echo", State: "up", Functions: []string{"echo"}},
		{Plugin: "broken", State: "restarting", Crashes: 2, LastCrash: "failed to start: exit status 3", LastCrashAt: time.Now().UTC()},
	}}
	if err := e.client.WriteRunnerStatus(ctx(t), st, time.Minute); err != nil {
		t.Fatal(err)
	}
	regs, err := e.client.Functions(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(regs) != 1 || len(regs["echo"]) != 1 {
		t.Fatalf("Functions = %+v, want echo alone: a status is no registration", regs)
	}
	runners, err := e.client.Runners(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(runners) != 1 || runners[0].Runner != "r1" || len(runners[0].Plugins) != 2 || runners[0].UpdatedAt.IsZero() {
		t.Fatalf("Runners = %+v, want r1's status", runners)
	}
	if got := runners[0].Plugins[1]; !got.Equal(st.Plugins[1]) || got.Serving() {
		t.Errorf("broken plugin read back as %+v, want %+v serving nothing", got, st.Plugins[1])
	}

	// A server answer aimed at another runner's status key is no status.
	forged := &nats.Msg{Subject: "$JS.API.DIRECT.GET.KV_OMNIQ_FUNCTIONS", Reply: "$KV.OMNIQ_FUNCTIONS.=runner.r2",
		Data: []byte(`{"last_by_subj":"$KV.OMNIQ_FUNCTIONS.=runner.r1"}`)}
	storeFunctionsAnswer(t, e, forged)
	if runners, err := e.client.Runners(ctx(t)); err != nil || len(runners) != 1 {
		t.Fatalf("Runners after a stored answer = %+v, %v; want r1's status alone", runners, err)
	}

	// Another runner with r1's id writes over it; r1 stopping leaves it.
	nc, err := e.srv.Connect()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	twin, err := jetstream.Open(ctx(t), nc, jetstream.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := twin.WriteRunnerStatus(ctx(t), jetstream.RunnerStatus{Runner: "r1"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := e.client.RemoveRunnerStatus(ctx(t), "r1"); err != nil {
		t.Fatal(err)
	}
	if runners, err := e.client.Runners(ctx(t)); err != nil || len(runners) != 1 {
		t.Fatalf("Runners after the other r1 stopped = %+v, %v; want the twin's status", runners, err)
	}
	if err := twin.RemoveRunnerStatus(ctx(t), "r1"); err != nil {
		t.Fatal(err)
	}
	if runners, err := e.client.Runners(ctx(t)); err != nil || len(runners) != 0 {
		t.Fatalf("Runners after the twin stopped = %+v, %v; want none", runners, err)
	}
}

// PluginStatus.Equal decides whether a runner rewrites its status between
// heartbeats: every field counts.
func TestPluginStatusEqual(t *testing.T) {
	at := time.Date(2026, 11, 28, 5, 0, 0, 0, time.UTC)
	base := jetstream.PluginStatus{Plugin: "p", State: "up", Functions: []string{"a", "b"}, QuarantinedUntil: at, Crashes: 1, LastCrash: "exit 1", LastCrashAt: at}
	for _, tc := range []struct {
		name   string
		change func(*jetstream.PluginStatus)
		equal  bool
	}{
		{"same", func(*jetstream.PluginStatus) {}, true},
		{"same instant in another zone", func(p *jetstream.PluginStatus) { p.LastCrashAt = at.In(time.FixedZone("x", 3600)) }, true},
		{"plugin", func(p *jetstream.PluginStatus) { p.Plugin = "q" }, false},
		{"state", func(p *jetstream.PluginStatus) { p.State = "restarting" }, false},
		{"a function fewer", func(p *jetstream.PluginStatus) { p.Functions = []string{"a"} }, false},
		{"quarantine end", func(p *jetstream.PluginStatus) { p.QuarantinedUntil = at.Add(time.Second) }, false},
		{"crashes", func(p *jetstream.PluginStatus) { p.Crashes = 2 }, false},
		{"last crash", func(p *jetstream.PluginStatus) { p.LastCrash = "exit 2" }, false},
		{"last crash time", func(p *jetstream.PluginStatus) { p.LastCrashAt = at.Add(time.Second) }, false},
	} {
		o := base
		o.Functions = append([]string(nil), base.Functions...)
		tc.change(&o)
		if got := base.Equal(o); got != tc.equal {
			t.Errorf("%s: Equal = %v, want %v", tc.name, got, tc.equal)
		}
	}
}

// IdleReason says why a plugin serves no function on one line, its last
// failure's first line cut at 200 runes: omniq-submit and the runner's
// unknown_function message both quote it.
func TestPluginStatusIdleReason(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	when := func(t time.Time) string { return t.Format(time.RFC3339) }
	long := strings.Repeat("é", 250)
	for _, c := range []struct {
		p    jetstream.PluginStatus
		want string
	}{
		{jetstream.PluginStatus{State: "restarting"}, "not started yet, retrying"},
		{jetstream.PluginStatus{State: "up"}, "up, but every function it declares was refused (declared by another plugin, or not among its config's functions)"},
		{jetstream.PluginStatus{State: "quarantined"}, "quarantined"},
		{jetstream.PluginStatus{State: "starting"}, "starting"},
		{jetstream.PluginStatus{State: "quarantined", QuarantinedUntil: at.Add(time.Minute), Crashes: 5, LastCrashAt: at, LastCrash: "killed by signal 9"},
			"quarantined until 2025-03-04T05:07:07Z; 5 failed starts or crashes, the last at 2025-03-04T05:06:07Z: killed by signal 9"},
		{jetstream.PluginStatus{State: "restarting", Crashes: 1, LastCrashAt: at, LastCrash: "failed to start\nplugin stderr:\nno key"},
			"not started yet, retrying; 1 failed starts or crashes, the last at 2025-03-04T05:06:07Z: failed to start …"},
		{jetstream.PluginStatus{State: "restarting", Crashes: 2, LastCrashAt: at, LastCrash: long + "\nmore"},
			"not started yet, retrying; 2 failed starts or crashes, the last at 2025-03-04T05:06:07Z: " + strings.Repeat("é", 200) + "…"},
	} {
		if got := c.p.IdleReason(when); got != c.want {
			t.Errorf("%+v: IdleReason = %q, want %q", c.p, got, c.want)
		}
	}
}
