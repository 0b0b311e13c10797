package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/omniq/omniq/jetstream"
)

// TestRecordChecksAskedWhileAProbeIsOutGoTogether: checks that come while
// a probe is answered wait for the next, which asks for all of them at
// once, at most jetstream.MaxProbeIDs a probe; each asker gets its own
// task's revision (0 for none), and an error goes to every asker of its
// probe.
func TestRecordChecksAskedWhileAProbeIsOutGoTogether(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var probes [][]string
	failFor := "" // the id whose probe fails
	c := newRecordChecker(func(_ context.Context, ids []string) (map[string]uint64, error) {
		mu.Lock()
		probes = append(probes, ids)
		first := len(probes) == 1
		mu.Unlock()
		if first {
			<-release // the first probe is out while the others gather
		}
		revs := map[string]uint64{}
		for _, id := range ids {
			if id == failFor {
				return nil, errors.New("no answer")
			}
			if len(id)%2 == 0 {
				revs[id] = uint64(len(id))
			}
		}
		return revs, nil
	})
	type answer struct {
		id  string
		rev uint64
		err error
	}
	answers := make(chan answer, 1000)
	ask := func(id string) {
		rev, err := c.revision(context.Background(), id)
		answers <- answer{id, rev, err}
	}
	go ask("first")
	waitUntil(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(probes) == 1 })
	failFor = "t-999" // read by the probes to come, after the first
	n := jetstream.MaxProbeIDs + 10
	for i := range n {
		go ask(fmt.Sprintf("t-%d", i+990))
	}
	waitUntil(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.queue) == n })
	close(release)
	failedProbe := -1
	for range n + 1 {
		a := <-answers
		if a.id == "first" {
			if a.err != nil || a.rev != 0 {
				t.Fatalf("first: %v %v", a.rev, a.err)
			}
			continue
		}
		mu.Lock()
		for i, p := range probes {
			for _, id := range p {
				if id == a.id && i > 0 {
					if failedProbe < 0 && a.err != nil {
						failedProbe = i
					}
					if (a.err != nil) != (i == failedProbe) {
						t.Errorf("%s asked in probe %d: error %v", a.id, i, a.err)
					}
				}
			}
		}
		mu.Unlock()
		if want := uint64(len(a.id)) * uint64(1-len(a.id)%2); a.err == nil && a.rev != want {
			t.Errorf("%s: revision %v, want %v", a.id, a.rev, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(probes) != 3 || len(probes[1]) != jetstream.MaxProbeIDs || len(probes[2]) != 10 {
		sizes := []int{}
		for _, p := range probes {
			sizes = append(sizes, len(p))
		}
		t.Fatalf("probes of %v ids; want 1, then %d, then 10", sizes, jetstream.MaxProbeIDs)
	}
	if failedProbe < 0 {
		t.Fatal("no asker was told of the failed probe")
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
